"""Checkpoints: a plain dict of tensors and plain data, saved atomically, loaded with ``weights_only=True``.

A checkpoint carries what is needed to continue exactly where a run stopped: weights, optimizer state,
the freeze plan, the number of epochs done, the history so far, the layer-group split, the resolved
config and the RNG state. Loading restores the freeze state from the plan (fastai and Lightning do not).
A checkpoint is data, never code: ``torch.load(..., weights_only=True)`` refuses anything else.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from harness.atomic import atomic_write
from harness.errors import ConfigError
from harness.models.groups import GroupedModel

CHECKPOINT_VERSION = 1


def save(path: str | Path, state: dict) -> None:
    atomic_write(path, lambda f: torch.save({"version": CHECKPOINT_VERSION, **state}, f), binary=True)


def load(path: str | Path) -> dict:
    """Load and check a checkpoint; any problem is a one-line ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint '{path}' does not exist")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a cut-off one loses its directory
        raise ConfigError(
            f"checkpoint '{path}' is unreadable: truncated, or not a file written by torch.save"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = str(e).splitlines()
        why = next((line.strip() for line in lines if "Unsupported global" in line), type(e).__name__)
        raise ConfigError(
            f"checkpoint '{path}' was refused: it holds objects other than tensors and plain data "
            f"(a checkpoint is never a way to run code): {why}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(
            f"checkpoint '{path}' is unreadable (truncated or not a checkpoint): {first}"
        ) from None
    if not isinstance(state, dict) or "model" not in state:
        raise ConfigError(f"checkpoint '{path}' is not a freezelab checkpoint (no 'model' entry)")
    if state.get("version") != CHECKPOINT_VERSION:
        raise ConfigError(
            f"checkpoint '{path}' has version {state.get('version')!r}; this harness reads version {CHECKPOINT_VERSION}"
        )
    return state


def load_model_state(model: GroupedModel, state: dict, path, *, n_groups: int | None = None) -> list[str]:
    """Copy weights into ``model``: all groups, or only the first ``n_groups`` (the transfer building block).

    Returns the names of the groups copied. Shapes must match exactly; a mismatch names the key.
    """
    groups = model.groups if n_groups is None else model.groups[:n_groups]
    source = state["model"]
    target = model.net.state_dict()
    copied = {}
    for key, value in target.items():
        if not any(g.owns(key) for g in groups):
            continue
        if key not in source:
            raise ConfigError(
                f"checkpoint '{path}' has no entry '{key}' for layer group of this model; architectures differ"
            )
        if source[key].shape != value.shape:
            raise ConfigError(
                f"checkpoint '{path}': '{key}' has shape {tuple(source[key].shape)}, this model needs {tuple(value.shape)}"
            )
        copied[key] = source[key]
    model.net.load_state_dict(copied, strict=False)
    return [g.name for g in groups]
