"""Checkpoints of freshly built models, for tests that run the tools on a config."""
import torch
from mmengine.config import Config

from ..engine import build_analysis_model


def save_model_checkpoint(config: str, path) -> str:
    """A freshly built model of ``config`` saved to ``path`` as an mmengine checkpoint with the
    config's classes in its ``dataset_meta``; returns the path."""
    cfg = Config.fromfile(config)
    model = build_analysis_model(cfg)
    torch.save({'state_dict': model.state_dict(),
                'meta': {'dataset_meta': {'classes': list(cfg.metainfo.classes)}}}, path)
    return str(path)
