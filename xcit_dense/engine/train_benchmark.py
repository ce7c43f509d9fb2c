"""One training step (forward, backward, optimizer step) to time and to measure: the backbone
alone (this package's XCiT with each recomputation option, or timm's ``Xcit`` with the same
weights) and a config's whole model (Mask R-CNN, Semantic FPN) on dummy annotated images.

Memory is the allocator's own account: on CUDA ``torch.cuda.max_memory_allocated``; on the CPU
the allocation and free records of torch's profiler (``profile_memory=True``), summed in time
order, which is what tensors held at the peak, not what malloc kept from the OS.
"""
import statistics
import time
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import nn

# How the backbone keeps what its backward pass needs.
OPTIONS = ('timm', 'plain', 'selective', 'with_cp')
BACKBONE_FLAGS = {'plain': dict(with_cp=False, selective_recompute=False),
                  'selective': dict(with_cp=False, selective_recompute=True),
                  'with_cp': dict(with_cp=True, selective_recompute=False)}
AUTOCAST = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def held_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """What a training step starts with: the parameters and the optimizer's state."""
    state = [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    return tensor_bytes(model.parameters()) + tensor_bytes(state)


def cpu_allocator_peak(step: Callable[[], None]) -> int:
    """Peak bytes held by CPU tensors during ``step()`` above what was held before it, from
    the profiler's allocation records."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    records = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                     if e.name() == '[memory]' and e.device_type() == DeviceType.CPU)
    held = peak = 0
    for _, nbytes in records:
        held += nbytes
        peak = max(peak, held)
    return peak


def measure_step(step: Callable[[], None], held: Callable[[], int], device: str,
                 runs: int = 3, warmup: int = 1) -> Dict[str, float]:
    """Median time of ``runs`` steps after ``warmup`` ones (the first allocates the optimizer
    state), and the peak memory of one more step: ``held()`` (parameters, optimizer state)
    plus the rise during the step."""
    cuda = device.startswith('cuda')

    def timed() -> float:
        start = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for _ in range(warmup):
        timed()
    times = [timed() for _ in range(runs)]
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        timed()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = held() + cpu_allocator_peak(step)
    return dict(time_s=statistics.median(times), peak_gb=peak / 1e9)


def paired_times(steps: Dict[str, Callable[[], None]], rounds: int, device: str = 'cpu'
                 ) -> Dict[str, Dict[str, float]]:
    """Time several steps taking turns, ``rounds`` times after one warm-up each: on a shared
    or throttled machine the time drifts by more than the differences sought, and steps taken
    in turn see the same drift. Per step: the median time and the median of its ratio to the
    first step's time in the same round."""
    cuda = device.startswith('cuda')
    times: Dict[str, list] = {name: [] for name in steps}
    for name, step in steps.items():
        step()
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            if cuda:
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    first = times[next(iter(steps))]
    return {name: dict(time_s=statistics.median(t),
                       ratio=statistics.median(a / b for a, b in zip(t, first)))
            for name, t in times.items()}


def backbone_model(option: str, arch: str, patch_size: int) -> Tuple[nn.Module, Callable]:
    """The backbone and the function a step runs: this package's XCiT trunk
    (``forward_blocks``, the block outputs at ``out_indices``) or timm's ``Xcit`` with the same
    weights (``forward_intermediates`` at the same blocks). No stochastic depth (timm's default),
    so both compute the same gradients."""
    import timm

    from ..models import XCiT
    torch.manual_seed(0)
    ours = XCiT(arch, patch_size=patch_size, drop_path_rate=0.,
                **BACKBONE_FLAGS.get(option, {}))
    ref = timm.create_model(f'xcit_{ours.arch_name}_p{patch_size}_224')
    ours.load_state_dict(ref.state_dict(), strict=False)
    if option == 'timm':
        indices = list(ours.out_indices)
        return ref, lambda x: ref.forward_intermediates(x, indices=indices,
                                                        intermediates_only=True)
    return ours, ours.forward_blocks


def backbone_step(model: nn.Module, forward: Callable, x: torch.Tensor,
                  dtype: str = 'fp32') -> Tuple[Callable[[], None], torch.optim.Optimizer]:
    """A training step of a backbone on ``x``: the loss is the mean square of its outputs."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    amp = AUTOCAST[dtype]

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=amp, enabled=amp is not None):
            outs = forward(x)
        sum(o.float().square().mean() for o in outs).backward()
        optimizer.step()

    return step, optimizer


def dummy_training_batch(scope: str, batch: int, height: int, width: int,
                         num_classes: int, objects: int = 10) -> Dict:
    """A batch of random images with random annotations, as a data loader gives it:
    mmdet's ``demo_mm_inputs`` (boxes and masks) or random mmseg label maps."""
    if scope == 'mmdet':
        from mmdet.testing import demo_mm_inputs
        return demo_mm_inputs(batch, [(3, height, width)] * batch, num_items=[objects] * batch,
                              num_classes=num_classes, with_mask=True)
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    generator = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.randint(0, 256, (3, height, width), dtype=torch.uint8,
                                    generator=generator))
        sample = SegDataSample(metainfo=dict(img_shape=(height, width),
                                             ori_shape=(height, width)))
        sample.gt_sem_seg = PixelData(data=torch.randint(
            0, num_classes, (1, height, width), generator=generator))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def config_model_step(config: str, option: str, batch: int, height: int, width: int,
                      device: str = 'cpu', dtype: str = 'fp32',
                      cfg_options: Optional[Dict] = None
                      ) -> Tuple[nn.Module, Callable[[], None], torch.optim.Optimizer]:
    """A training step of a config's whole model (its backbone set to ``option``, no
    pretrained weights, SyncBN as BN off GPUs) on a dummy batch at ``height`` x ``width``."""
    from mmengine.config import Config

    from .build import build_model, config_scope
    from .launch import fall_back_from_sync_bn
    if option == 'timm':
        raise ValueError("timm's Xcit is not a dense backbone: no whole-model step")
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.model.backbone.init_cfg = None
    cfg.model.backbone.update(BACKBONE_FLAGS[option])
    if not device.startswith('cuda'):
        fall_back_from_sync_bn(cfg)
    scope = config_scope(cfg)
    torch.manual_seed(0)
    model = build_model(cfg).to(device).train()
    head = cfg.model.get('decode_head') or cfg.model.roi_head.bbox_head
    data = dummy_training_batch(scope, batch, height, width, head.num_classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    amp = AUTOCAST[dtype]

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.split(':')[0], dtype=amp, enabled=amp is not None):
            batch_data = model.data_preprocessor(data, True)
            losses = model(**batch_data, mode='loss')
            loss, _ = model.parse_losses(losses)
        loss.backward()
        optimizer.step()

    return model, step, optimizer


def largest_square(sides: Sequence[int], peaks_gb: Sequence[float],
                   budget_gb: float) -> Optional[float]:
    """The side of the largest square image whose peak fits ``budget_gb``, from a least-squares
    line of peak against pixels through the measured points (None with fewer than two)."""
    if len(sides) < 2:
        return None
    pixels = [s * s for s in sides]
    mean_p, mean_m = statistics.fmean(pixels), statistics.fmean(peaks_gb)
    slope = (sum((p - mean_p) * (m - mean_m) for p, m in zip(pixels, peaks_gb))
             / sum((p - mean_p) ** 2 for p in pixels))
    intercept = mean_m - slope * mean_p
    return ((budget_gb - intercept) / slope) ** 0.5 if slope > 0 else None


def gradient_difference(reference: nn.Module, other: nn.Module,
                        loss: Callable[[nn.Module], torch.Tensor]) -> float:
    """Largest relative difference (max abs difference over max abs value, per parameter)
    between the gradients of two models holding the same weights, over every parameter the
    reference has a gradient for (``loss(model)`` gives the loss to differentiate)."""
    grads = []
    for model in (reference, other):
        model.zero_grad(set_to_none=True)
        loss(model).backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    missing = grads[0].keys() - grads[1].keys()
    if missing or not grads[0]:
        raise AssertionError(f'no gradient for {sorted(missing)[:5]} in the other model')
    return max(((grads[1][n] - g).abs().max() / g.abs().max().clamp_min(1e-12)).item()
               for n, g in grads[0].items())
