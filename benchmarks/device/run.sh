#!/usr/bin/env bash
# One session's device work for issues 12 and 18, as one command (device time is 15 minutes a session,
# 10 a command). Prepare with `bash benchmarks/device/pack.sh`, then call the device tool with
#   command: TRAIN_SECONDS=420 BENCH=0 bash benchmarks/device/run.sh     carry: [".device"]   timeout_s: 570
# 1. Continues (or starts) the faithful 501-epoch MLFuse run, configs/mlfuse_train.toml unchanged, in
#    benchmarks/runs/mlfuse-faithful on the GPU for TRAIN_SECONDS, stopping checkpointed (max_seconds);
#    the run folder comes back as $OUT/faithful.tgz: unpack it over benchmarks/runs/ here and commit it
#    (last.pt and logs), so the next session with a device continues it.
# 2. With BENCH=1: benchmarks/bench_gpu.py (the five networks at fp32/bf16/fp16, 480x640 and 4096x4096,
#    tiled = untiled on the device) -> $OUT/gpu.json, for BENCH_SECONDS at most.
# DEVICE, RUN, OUT and PYTHON may be set to run it elsewhere (tests/test_device_scripts.py runs it on the CPU).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/mlfuse-device-out}
DEVICE=${DEVICE:-cuda}
RUN=${RUN:-benchmarks/runs/mlfuse-faithful}
mkdir -p "$OUT"
py=${PYTHON:-python3}
if ! "$py" -c "import pywt" 2>/dev/null && ls .device/whl/*.whl >/dev/null 2>&1; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .device/whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
[ -e ../shared ] || ln -s "$PWD/.device/shared" ../shared
{ nvidia-smi -L 2>/dev/null; "$py" -c "import torch; print(torch.__version__, torch.version.cuda)"; } > "$OUT/device.txt"
status=0
if [ "${TRAIN_SECONDS:-0}" != 0 ]; then
  resume=(); [ -f "$RUN/last.pt" ] && resume=(--resume)
  "$py" -m mlfuse train mlfuse --config configs/mlfuse_train.toml --out "$RUN" --device "$DEVICE" \
    --set num_workers="${WORKERS:-8}" --set val_slow_metrics=false --set sample_every=0 \
    --set val_every="${VAL_EVERY:-25}" --set checkpoint_every=100 \
    --set max_seconds="$TRAIN_SECONDS" --quiet "${resume[@]}" 2>&1 | tee "$OUT/train.log"
  status=${PIPESTATUS[0]}
  tar czf "$OUT/faithful.tgz" -C "$(dirname "$RUN")" "$(basename "$RUN")"
fi
if [ "${BENCH:-0}" = 1 ]; then
  timeout "${BENCH_SECONDS:-300}" "$py" benchmarks/bench_gpu.py --device "$DEVICE" --out "$OUT/gpu.json" \
    ${BENCH_ARGS:-} 2>&1 | tail -40 > "$OUT/bench.log"
fi
exit "$status"
