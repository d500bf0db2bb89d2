#!/usr/bin/env bash
# Start or continue the mlfuse-cpu-120ep training run (issue 12: schedule=cpu at 120 epochs, 6,360 steps; the next
# candidate for the default rule) from the repository root, on both cores:
#   bash benchmarks/runs/mlfuse-cpu-120ep.sh                     # until done
#   MAX_SECONDS=9000 bash benchmarks/runs/mlfuse-cpu-120ep.sh    # stop, checkpointed, after 9000 s of training
# The run writes last.pt every 10 steps, and on SIGTERM (`pkill -TERM -f mlfuse-cpu-120ep`) or when
# MAX_SECONDS is spent it finishes its step, writes last.pt and exits; commit
# benchmarks/runs/mlfuse-cpu-120ep/{last.pt,*.csv,config.json} before a session ends so the next one resumes it.
# Every 2nd epoch's weights stay beside them (epoch_NNNN.safetensors, not committed) for
# benchmarks/dark_detail.py: when, in the run, night-scene texture gets crushed (train_schedule.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=benchmarks/runs/mlfuse-cpu-120ep
args=(mlfuse --config configs/mlfuse_train.toml --out "$out" --set schedule=cpu --epochs 120 --set threads=2
      --set checkpoint_every=10 --set val_every=5 --set val_slow_metrics=false --set sample_every=0 --set "max_seconds=${MAX_SECONDS:-0}"
      --set keep_epoch_checkpoints=2 --quiet)
if [ -f "$out/last.pt" ]; then
  exec mlfuse train "${args[@]}" --resume
fi
exec mlfuse train "${args[@]}"
