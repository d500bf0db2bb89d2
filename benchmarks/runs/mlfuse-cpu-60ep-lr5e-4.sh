#!/usr/bin/env bash
# The mlfuse-cpu-60ep-lr5e-4 run (issue 12: schedule=cpu, 60 epochs = own-v2's 3,180 steps at half its peak lr;
# the lr 5e-4 ablation row, and the same summed lr as the 30-epoch row over twice the steps): see cpu-schedule.sh.
#   [MAX_SECONDS=S] bash benchmarks/runs/mlfuse-cpu-60ep-lr5e-4.sh
exec bash "$(dirname "$0")/cpu-schedule.sh" 60 5e-4
