#!/usr/bin/env bash
# Start or continue the mlfuse-own-v2 training run (issue 12) from the repository root, on one core:
#   bash benchmarks/runs/mlfuse-own-v2.sh
# The run writes last.pt every 10 steps; commit benchmarks/runs/mlfuse-own-v2/{last.pt,*.csv,config.json}
# before a session ends so the next one resumes it.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=benchmarks/runs/mlfuse-own-v2
args=(mlfuse --config configs/mlfuse_train.toml --out "$out" --set schedule=cpu --set threads=1
      --set checkpoint_every=10 --set val_every=5 --set val_slow_metrics=false --set sample_every=0 --quiet)
if [ -f "$out/last.pt" ]; then
  exec mlfuse train "${args[@]}" --resume
fi
exec mlfuse train "${args[@]}"
