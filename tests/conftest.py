"""Shared fixtures: compose the real config tree (conf/) and shrink it, as lightning-hydra-template does."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"

# Tiny and fast: generated data, a small convnet, two epochs, no checkpoints unless a test asks.
TINY = [
    "data=synthetic",
    "model=convnet",
    "model.channels=[8,8]",
    "model.hidden=[16]",
    "epochs=2",
    "batch_size=32",
    "progress=false",
    "threads=1",
]


def compose_config(overrides: list[str] | None = None, *, tiny: bool = True, root: Path | None = None) -> DictConfig:
    overrides = (TINY if tiny else []) + list(overrides or [])
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    if root is not None:
        with open_dict(cfg):
            cfg.paths.output_root = str(root)
    return cfg


@pytest.fixture
def make_cfg(tmp_path):
    """``make_cfg(["strategy=head_only"])`` -> a tiny composed config writing under tmp_path."""

    def make(overrides=None, tiny=True):
        return compose_config(overrides, tiny=tiny, root=tmp_path / "outputs")

    return make
