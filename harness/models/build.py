"""Model builders: each returns a :class:`~harness.models.groups.GroupedModel` (network + ordered layer groups).

Config group ``conf/model/<name>.yaml``; ``model.name`` picks the builder:

- ``convnet``: a plain CNN in the style of Yosinski et al. (2014), one weight layer per group
  (``conv1 .. convN, fc1 .. fcM, head``), so "the first n layers" of the paper is "the first n groups".
- ``resnet18`` / ``resnet34`` / ``resnet50``: torchvision architectures (never downloaded), re-wrapped as an
  ``nn.Sequential`` of ``stem, layer1..layer4, head`` so a frozen prefix can be run on its own.
- ``custom``: any module reachable by Hydra ``_target_`` plus a user-given split.
- ``timm``: any timm model (``model.arch``), its groups from timm's ``group_matcher``.

All builders share the last steps (:func:`finish`): an optional user split from ``model.groups``, the check
that every parameter sits in exactly one group (so a bad split fails at build time, not mid-run), and the
check that the head is the last ``nn.Linear`` of the last group.

Changing the number of classes replaces the head (the final ``nn.Linear``) and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from omegaconf import DictConfig, OmegaConf
from torch import nn

from harness.config import schema
from harness.errors import ConfigError
from harness.models.convnet import build_convnet
from harness.models.custom import build_custom
from harness.models.groups import GroupedModel
from harness.models.resnet import build_resnet
from harness.models.timm_models import build_timm


def build_model(model_cfg, *, num_classes: int, in_channels: int, image_size: int) -> GroupedModel:
    """Build the network of ``model_cfg`` (the ``model`` config group) for the given data shape.

    Groups are ordered input side first, head last. Raises :class:`ConfigError` for any bad config.
    """
    cfg = schema.check_values("model", _plain(model_cfg), unknown=True)  # its keys and values, all known
    return BUILDERS[cfg["name"]](cfg, num_classes=num_classes, in_channels=in_channels, image_size=image_size)


def reinitialize(modules: Iterable[nn.Module]) -> None:
    """Fresh random init of every submodule that has ``reset_parameters``.

    Uses each layer's own ``reset_parameters`` (PyTorch's defaults: a re-initialised convnet or custom layer
    is drawn like a newly built one; torchvision ResNets init their convs with kaiming_normal in the
    constructor, so a reset ResNet conv follows PyTorch's default instead). Norm layers get weight 1, bias 0
    and reset running statistics. Draws from the global RNG: seed before calling.
    """
    for module in modules:
        for sub in module.modules():
            reset = getattr(sub, "reset_parameters", None)
            if callable(reset):
                reset()


def _plain(model_cfg) -> dict:
    if isinstance(model_cfg, DictConfig):
        return OmegaConf.to_container(model_cfg, resolve=True)
    if isinstance(model_cfg, Mapping):
        # A plain dict may still hold OmegaConf lists/mappings (e.g. built from parts of a DictConfig).
        return {
            k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
            for k, v in model_cfg.items()
        }
    raise ConfigError(f"model config must be a mapping with a 'name' key, got {type(model_cfg).__name__}")


BUILDERS = {
    "convnet": build_convnet,
    "resnet18": build_resnet,
    "resnet34": build_resnet,
    "resnet50": build_resnet,
    "custom": build_custom,
    "timm": build_timm,
}
