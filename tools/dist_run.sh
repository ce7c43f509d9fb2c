#!/usr/bin/env bash
# Run a tool with torchrun: tools/dist_run.sh TOOL NUM_PROCS [TOOL args...], TOOL a script
# of tools/ (train.py, test.py), given --launcher pytorch. dist_train.sh and dist_test.sh call it.
# One process per GPU (nccl), or NUM_PROCS CPU processes (gloo) on a machine without GPUs.
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and PORT on each node.
set -euo pipefail
TOOL=$1
NPROC=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
PYTHON=${PYTHON:-python}
# Without a GPU, each process gets its share of the cores (torchrun would give each one
# thread); an OMP_NUM_THREADS of the user's wins.
if [ -z "${OMP_NUM_THREADS:-}" ] && ! command -v nvidia-smi >/dev/null 2>&1; then
  THREADS=$(( $(nproc) / NPROC ))
  export OMP_NUM_THREADS=$(( THREADS > 0 ? THREADS : 1 ))
fi

PYTHONPATH="$(dirname "$0")/..${PYTHONPATH:+:$PYTHONPATH}" \
"$PYTHON" -m torch.distributed.run --nnodes="$NNODES" --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" --master_port="$PORT" --nproc_per_node="$NPROC" \
    "$(dirname "$0")/$TOOL" --launcher pytorch "${@:3}"
