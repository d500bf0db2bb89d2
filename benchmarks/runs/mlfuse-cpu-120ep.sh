#!/usr/bin/env bash
# The mlfuse-cpu-120ep run (issue 12: schedule=cpu at 120 epochs, 6,360 steps): see cpu-schedule.sh.
#   [MAX_SECONDS=S] bash benchmarks/runs/mlfuse-cpu-120ep.sh
exec bash "$(dirname "$0")/cpu-schedule.sh" 120
