#!/usr/bin/env bash
# Training on a Slurm cluster (GPU nodes; GPUS, GPUS_PER_NODE, ...: see slurm_run.sh):
#   GPUS=16 tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]
set -euo pipefail
exec bash "$(dirname "$0")/slurm_run.sh" train.py "$1" "$2" "$3" --work-dir="$4" "${@:5}"
