"""Time and memory of a detector's or segmentor's inference split into its stages: data
preprocessing, backbone (stem and blocks), pyramid, neck, heads, and post-processing (the
rest: proposals, non-maximum suppression, mask pasting, label maps). What
``tools/analysis_tools/benchmark_high_res.py`` reports.

The stages' methods are wrapped on the model instance; a thread samples the
process's resident memory every few milliseconds (CPU) and books each sample's peak to the
stage running then. On a GPU the peak is ``torch.cuda.max_memory_allocated``, reset per stage.
"""
import contextlib
import os
import threading
import time
from typing import Callable, Dict, Iterator, List, Tuple

import torch
from torch import nn

STAGES = ('data', 'backbone', 'pyramid', 'neck', 'heads', 'post')
_PAGE = os.sysconf('SC_PAGE_SIZE')


def resident_bytes() -> int:
    """The process's resident memory now."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * _PAGE


def stage_methods(model: nn.Module) -> List[Tuple[str, nn.Module, str]]:
    """(stage, module, method) whose calls belong to a stage: the data preprocessor, the
    backbone (its ``forward`` and ``forward_trunk``; the pyramid is timed apart, and a
    pyramid level a streamed neck reads band by band is booked to the neck), the neck, and
    every head's networks (the RPN's and dense heads' convolutions, the RoI extractors and
    box/mask heads, a segmentor's decoder); their post-processing is not in ``forward`` and is
    booked to 'post'."""
    methods: List[Tuple[str, nn.Module, str]] = []
    if getattr(model, 'data_preprocessor', None) is not None:
        methods.append(('data', model.data_preprocessor, 'forward'))
    backbone = model.backbone
    methods += [('backbone', backbone, name) for name in ('forward', 'forward_trunk')
                if hasattr(backbone, name)]
    if hasattr(backbone, 'pyramid'):
        methods += [('pyramid', backbone.pyramid, name)
                    for name in ('forward', 'forward_streamed') if hasattr(backbone.pyramid, name)]
    if getattr(model, 'neck', None) is not None:
        methods.append(('neck', model.neck, 'forward'))
    for name in ('rpn_head', 'bbox_head', 'decode_head', 'panoptic_head', 'mask_head'):
        if isinstance(getattr(model, name, None), nn.Module):
            methods.append(('heads', getattr(model, name), 'forward'))
    roi_head = getattr(model, 'roi_head', None)
    if roi_head is not None:
        methods += [('heads', m, 'forward') for n, m in roi_head.named_children()
                    if n.endswith(('_head', '_roi_extractor'))]
    return methods


class StageProfiler:
    """Seconds and peak memory (bytes) per stage of one model's inference; see the module's
    description. Use :meth:`attach` once, then :meth:`run` per measured call."""

    def __init__(self, device: str = 'cpu', interval: float = 0.002) -> None:
        self.cuda = device.startswith('cuda')
        self.interval = interval
        self.seconds: Dict[str, float] = {}
        self.peak: Dict[str, int] = {}
        self._stack: List[str] = []
        self._lock = threading.Lock()
        self._last = 0.

    def attach(self, model: nn.Module) -> None:
        """Wrap the model's stage methods (:func:`stage_methods`, on the instances)."""
        for stage, module, name in stage_methods(model):
            setattr(module, name, self._timed(stage, getattr(module, name)))

    def _current(self) -> str:
        return self._stack[-1] if self._stack else 'post'

    def _book_peak(self, stage: str, value: int) -> None:
        with self._lock:
            self.peak[stage] = max(self.peak.get(stage, 0), value)

    def _advance(self) -> None:
        """Book the time since the last switch (and, on a GPU, the peak) to the running
        stage."""
        if self.cuda:
            torch.cuda.synchronize()
            self._book_peak(self._current(), torch.cuda.max_memory_allocated())
            torch.cuda.reset_peak_memory_stats()
        now = time.perf_counter()
        stage = self._current()
        self.seconds[stage] = self.seconds.get(stage, 0.) + now - self._last
        self._last = now

    def _timed(self, stage: str, forward: Callable) -> Callable:
        def timed(*args, **kwargs):
            self._advance()
            self._stack.append(stage)
            try:
                return forward(*args, **kwargs)
            finally:
                self._advance()
                self._stack.pop()
        return timed

    @contextlib.contextmanager
    def _sampling(self) -> Iterator[None]:
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(self.interval):
                self._book_peak(self._current(), resident_bytes())
        thread = None if self.cuda else threading.Thread(target=sample, daemon=True)
        if thread is not None:
            thread.start()
        try:
            yield
        finally:
            stop.set()
            if thread is not None:
                thread.join()

    def run(self, call: Callable) -> Tuple[object, Dict[str, float], Dict[str, int], float]:
        """``call()``'s result, the seconds and peak memory of each stage, and the total
        seconds. Stage times exclude the stages nested in them (the pyramid runs inside the
        backbone's forward); 'post' is whatever ran outside the stage modules."""
        self.seconds, self.peak, self._stack = {}, {}, []
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        with self._sampling():
            start = self._last = time.perf_counter()
            result = call()
            self._advance()
        if not self.cuda:
            self._book_peak('post', resident_bytes())
        return result, dict(self.seconds), dict(self.peak), self._last - start
