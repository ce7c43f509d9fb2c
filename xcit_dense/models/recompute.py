"""Selective activation recomputation for training: keep what the large products made,
recompute the element-wise work between them in the backward pass.

A transformer block saves for its backward pass, per token and channel, its LayerNorms'
inputs and outputs, the MLP's 4x-wide hidden layer twice (before and after the GELU), every
map between LPI's convolutions and each residual branch. Most of those are one cheap
element-wise step away from a matrix product's output. :func:`checkpoint_products` runs a
module under :mod:`torch.utils.checkpoint` with a policy that caches the outputs of matrix
multiplications, convolutions and batch norms, and every output much smaller than a token map
(XCA's token norms, its d x d attention), and lets the rest (LayerNorm, GELU, the LayerScale
residuals, casts and copies) be recomputed from them when the gradient needs it. Whole-block
checkpointing (``with_cp``) recomputes the products too: a third more time.

Batch norm and in-place operations are kept, not recomputed, so running statistics and
counters are updated once per step.
"""
import functools
from typing import Any, Callable

import torch
from torch.utils.checkpoint import (CheckpointPolicy, checkpoint,
                                    create_selective_checkpoint_contexts)

aten = torch.ops.aten
# Outputs cached in the forward pass (aten ops as seen below autograd).
PRODUCT_OPS = frozenset({
    aten.mm, aten.addmm, aten.bmm, aten.baddbmm, aten.convolution, aten._convolution,
    aten.mkldnn_convolution, aten.linear,
})
# Outputs under 1/SMALL_FRACTION of the module's input are cached: recomputing a reduction
# over the tokens costs a pass over them, keeping its result almost nothing.
SMALL_FRACTION = 8


def _numel(out: Any) -> int:
    if isinstance(out, torch.Tensor):
        return out.numel()
    if isinstance(out, (tuple, list)):
        return sum(_numel(o) for o in out)
    return 0


def keep_products_policy(small_numel: int) -> Callable[..., CheckpointPolicy]:
    """The policy: cache products, batch norms, in-place ops, collectives and outputs of at
    most ``small_numel`` elements; recompute everything else."""

    def policy(ctx: Any, op: torch._ops.OpOverload, *args, **kwargs) -> CheckpointPolicy:
        # batch_norm covers native_batch_norm, _batch_norm_with_update, cudnn_batch_norm and
        # SyncBN's batch_norm_stats / batch_norm_elemt / gather_stats: none may run twice;
        # nor may an in-place op (num_batches_tracked.add_(1)) or a collective.
        if (op.overloadpacket in PRODUCT_OPS or 'batch_norm' in op.__name__
                or op._schema.is_mutable or op.namespace in ('c10d', '_c10d_functional')
                or _numel(ctx.op_output) <= small_numel):
            return CheckpointPolicy.MUST_SAVE
        return CheckpointPolicy.PREFER_RECOMPUTE

    return policy


def checkpoint_products(module: Callable, x: torch.Tensor, *args) -> torch.Tensor:
    """``module(x, *args)``, saving for backward only its input ``x``, the outputs of its matrix
    products, convolutions and batch norms, and outputs much smaller than ``x`` (the same
    gradients as the plain call)."""
    policy = keep_products_policy(x.numel() // SMALL_FRACTION)
    # An in-place op's cached output is its input, whose version counter autograd bumps again
    # when the recomputation replays the op: the value is not changed (the tests compare the
    # buffers), so the mutation check is off.
    return checkpoint(module, x, *args, use_reentrant=False,
                      context_fn=functools.partial(create_selective_checkpoint_contexts, policy,
                                                   allow_cache_entry_mutation=True))
