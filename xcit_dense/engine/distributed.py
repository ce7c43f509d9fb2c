"""Distributed data parallel on CPU (gloo)."""
from mmengine.model import MMDistributedDataParallel


class CPUDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` for CPU modules.

    mmengine's runner passes ``device_ids=[LOCAL_RANK]``, which torch's DDP rejects for a module
    on the CPU; this wrapper drops it.
    """

    def __init__(self, module, device_ids=None, **kwargs) -> None:
        super().__init__(module=module, **kwargs)
