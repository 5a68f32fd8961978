"""Shared fixtures: compose the real config tree (conf/) and shrink it, as lightning-hydra-template does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from omegaconf import DictConfig

from harness.config.compose import CONF_DIR
from harness.config.compose import compose_config as compose

REPO = Path(__file__).resolve().parents[1]
CONF = CONF_DIR


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto`` (pyproject's addopts): two workers per core. Many tests spend their time waiting (on
    subprocesses, a SLURM queue, heartbeats, a database), and a second worker per core fills that time."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return 2 * cores


# Tiny and fast: generated data, a small convnet, two epochs, one thread.
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


# A transfer grid's bases and treatments train to convergence by default (transfer.base_epochs=auto, up to 60
# epochs); shrunk, they train the TINY epochs unless a test asks for auto itself.
TINY_TRANSFER = ["transfer.base_epochs=null", "transfer.epochs=null"]


def compose_config(
    overrides: list[str] | None = None, *, tiny: bool = True, root: Path | None = None
) -> DictConfig:
    overrides = list(overrides or [])
    if tiny:
        asked = {o.split("=")[0] for o in overrides}
        with_transfer = any(
            o.startswith(("transfer=yosinski", "experiment=", "search=transfer")) for o in overrides
        )
        shrink = [o for o in TINY_TRANSFER if with_transfer and o.split("=")[0] not in asked]
        overrides = TINY + shrink + overrides
    return compose(overrides, root=root)


@pytest.fixture
def make_cfg(tmp_path):
    """``make_cfg(["strategy=head_only"])`` -> a tiny composed config writing under tmp_path."""

    def make(overrides=None, tiny=True):
        return compose_config(overrides, tiny=tiny, root=tmp_path / "outputs")

    return make
