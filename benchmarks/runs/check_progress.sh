#!/usr/bin/env bash
# Mid-run quality check of the mlfuse-own-v2 run (issue 12): the model in the run's last.pt against the
# MLFuse authors' checkpoint on the default rule's sets (VIFB + MSRS test + M3FD sample, TNO for SF/AG),
# then the rule itself. From the repository root, with ../shared present:
#   bash benchmarks/runs/check_progress.sh [RUN_DIR] [OUT_DIR]
# Fused images are cached (~/.cache/mlfuse/bench); FMI makes it take ~30 CPU-minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
run=${1:-benchmarks/runs/mlfuse-own-v2}
out=${2:-/tmp/own-v2-progress}
shared=$(cd ../shared && pwd)
mkdir -p "$out"
step=$(python - "$run" "$out" <<'PY'
import sys, torch
from safetensors.torch import save_file
run, out = sys.argv[1:]
state = torch.load(f"{run}/last.pt", weights_only=True)
save_file({k: v.contiguous() for k, v in state["model"].items()}, f"{out}/model.safetensors")
print(state["state"]["step"])
PY
)
cp "$run"/{config.json,epochs.csv,steps.csv,val.csv} "$out"/
mlfuse weights package "$out" "$out/own-v2-step$step" --name "mlfuse-own-v2-step$step" --overwrite >/dev/null
cat > "$out/quality.toml" <<TOML
title = "mlfuse-own-v2 at step $step vs the authors' checkpoint"
out = "report"
methods = ["own-v2@$step=mlfuse:$out/own-v2-step$step", "mlfuse:paper"]
profiles = ["paper", "cddfuse"]
slow = true
threads = 1
efficiency = false
[weights_files]
mlfuse-paper = "$shared/weights/mlfuse_official.pth"
[[datasets]]
name = "vifb"
root = "$shared/data/vifb/test"
[[datasets]]
name = "msrs"
root = "$shared/data/msrs/test"
[[datasets]]
name = "m3fd"
root = "$shared/data/m3fd/sample"
[[datasets]]
name = "tno"
root = "$shared/data/tno/test"
TOML
nice -n 10 mlfuse bench --config "$out/quality.toml" --overwrite --quiet
python benchmarks/default_rule.py "$out/report/bench.json" --candidate "own-v2@$step" \
    --out "$out/report/default_rule.md" || true
