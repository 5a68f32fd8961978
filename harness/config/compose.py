"""Compose the real config tree from Python (tests, benchmarks, notebooks), as the CLI would."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict


def _conf_dir() -> Path:
    """The config tree: the repository's ``conf/`` in a checkout (an editable install too), else the copy the
    wheel ships inside the package (``harness/conf``, put there by setup.py's build step)."""
    package = Path(__file__).resolve().parents[1]
    checkout = package.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "conf" / "config.yaml").is_file():
        return checkout / "conf"
    return package / "conf"


CONF_DIR = _conf_dir()


def compose_config(overrides: list[str] | None = None, *, root: str | Path | None = None) -> DictConfig:
    """``conf/config.yaml`` with CLI-style ``overrides``; ``root`` moves every output (runs, bases, checkpoints)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides or []))
    if root is not None:
        with open_dict(cfg):
            cfg.paths.output_root = str(root)
    return cfg
