#!/usr/bin/env bash
# Start or continue an issue-12 ablation run of MLFuse's `schedule=cpu` cut or stretched to EPOCHS epochs,
# optionally at another peak learning rate LR (default: the schedule's 1e-3), in
# benchmarks/runs/mlfuse-cpu-<EPOCHS>ep (or mlfuse-cpu-<EPOCHS>ep-lr<LR>), from the repository root, on both cores:
#   bash benchmarks/runs/cpu-schedule.sh EPOCHS [LR]                     # until done
#   MAX_SECONDS=9000 bash benchmarks/runs/cpu-schedule.sh EPOCHS [LR]    # stop, checkpointed, after 9000 s of training
#   THREADS=1 bash benchmarks/runs/cpu-schedule.sh EPOCHS [LR]           # on one core (default 2)
# The run writes last.pt every 10 steps, and on SIGTERM (`pkill -TERM -f "runs/mlfuse-cpu-<EPOCHS>ep "`,
# the trailing space keeps 12ep from matching 120ep) or when
# MAX_SECONDS is spent it finishes its step, writes last.pt and exits; commit the run folder's
# {last.pt,*.csv,config.json} before a session ends so the next one resumes it. Every 2nd epoch's weights
# stay beside them (epoch_NNNN.safetensors, not committed) for benchmarks/dark_detail.py: when, in the run,
# night-scene texture gets crushed (benchmarks/results/train_schedule.md).
set -euo pipefail
epochs=${1:?usage: cpu-schedule.sh EPOCHS [LR]}
lr=${2:-}
cd "$(dirname "$0")/../.."
out=benchmarks/runs/mlfuse-cpu-${epochs}ep${lr:+-lr$lr}
args=(mlfuse --config configs/mlfuse_train.toml --out "$out" --set schedule=cpu --epochs "$epochs" ${lr:+--set lr=$lr} --set "threads=${THREADS:-2}"
      --set checkpoint_every=10 --set val_every=5 --set val_slow_metrics=false --set sample_every=0
      --set "max_seconds=${MAX_SECONDS:-0}" --set keep_epoch_checkpoints=2 --quiet)
if [ -f "$out/last.pt" ]; then
  exec mlfuse train "${args[@]}" --resume
fi
exec mlfuse train "${args[@]}"
