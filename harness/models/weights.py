"""Weights from files: a state_dict read as data (``weights_only``) and matched key by key to a model."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from harness.config.checks import flat_message
from harness.errors import ConfigError
from harness.models.groups import GroupedModel, head_layer, head_module_name


def load_weights(
    model: GroupedModel, path: str, *, strict_shapes: bool = True, skip_head: bool = False
) -> None:
    """Load a state_dict (saved with ``torch.save(model.net.state_dict(), path)``) into ``model.net``.

    - ``skip_head=True``: the head's entries are not loaded (the head keeps its current weights) and may
      have another class count in the file; this is how pretrained weights meet a new number of classes.
    - ``strict_shapes=False``: entries whose shape differs are skipped instead of being an error (keys must
      still match). With the default, any mismatch is a :class:`ConfigError` naming the file and the key.
    """
    state = read_state_dict(path, what="weights file")
    skip: set[str] = set()
    if skip_head:
        head_layer(model)  # a clear error when the model has no head to skip
        head = head_module_name(model)
        skip = {f"{head}.{n}" for n, _ in model.net.get_submodule(head).state_dict().items()}
    expected = model.net.state_dict()
    to_load = matching_entries(
        expected, state, source=f"weights file '{path}'", skip=skip, strict_shapes=strict_shapes
    )
    # Every key was checked above; strict=False only because skipped entries are deliberately absent.
    model.net.load_state_dict(to_load, strict=False)


def read_state_dict(path: str, *, what: str) -> dict[str, torch.Tensor]:
    if not Path(path).is_file():
        raise ConfigError(f"{what} '{path}' does not exist")
    try:
        # weights_only: a weights file is data, never a way to run code.
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:
        raise ConfigError(
            f"{what} '{path}' could not be read (truncated, corrupt or not torch.save): {flat_message(e)}"
        ) from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{what} '{path}' is not a state_dict (a mapping of names to tensors)")
    return dict(state)


def matching_entries(
    expected: Mapping[str, torch.Tensor],
    found: Mapping[str, torch.Tensor],
    *,
    source: str,
    skip: set[str],
    strict_shapes: bool = True,
) -> dict[str, torch.Tensor]:
    """The entries of ``found`` to load into a module whose state_dict is ``expected``.

    Raises a one-line ConfigError at the first key missing, unexpected or of the wrong shape (in the
    model's key order, so the message points at the earliest layer that disagrees).
    """
    to_load = {}
    for key, tensor in expected.items():
        if key in skip:
            continue
        if key not in found:
            raise ConfigError(f"{source} does not match the model: key '{key}' is missing from the file")
        have, want = tuple(found[key].shape), tuple(tensor.shape)
        if have != want:
            if strict_shapes:
                raise ConfigError(
                    f"{source} does not match the model: "
                    f"key '{key}' has shape {have} in the file, {want} in the model"
                )
            continue
        to_load[key] = found[key]
    for key in found:
        if key not in expected and key not in skip:
            raise ConfigError(
                f"{source} does not match the model: key '{key}' in the file is not in the model"
            )
    return to_load
