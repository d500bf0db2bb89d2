#!/usr/bin/env bash
# The mlfuse-cpu-30ep run (issue 12: schedule=cpu at 30 epochs, 1,590 steps; the 30-epoch ablation row and a
# candidate for the default rule): see cpu-schedule.sh.
#   [MAX_SECONDS=S] bash benchmarks/runs/mlfuse-cpu-30ep.sh
exec bash "$(dirname "$0")/cpu-schedule.sh" 30
