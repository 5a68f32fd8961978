"""Compose the real config tree from Python (tests, benchmarks, notebooks), as the CLI would."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def compose_config(overrides: list[str] | None = None, *, root: str | Path | None = None) -> DictConfig:
    """``conf/config.yaml`` with CLI-style ``overrides``; ``root`` moves every output (runs, bases, checkpoints)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides or []))
    if root is not None:
        with open_dict(cfg):
            cfg.paths.output_root = str(root)
    return cfg
