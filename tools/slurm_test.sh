#!/usr/bin/env bash
# Testing on a Slurm cluster (GPU nodes; GPUS, GPUS_PER_NODE, ...: see slurm_run.sh):
#   GPUS=8 tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]
set -euo pipefail
exec bash "$(dirname "$0")/slurm_run.sh" test.py "$1" "$2" "$3" "$4" "${@:5}"
