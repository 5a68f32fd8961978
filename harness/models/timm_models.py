"""``model=timm model.arch=<any timm model name>``: a timm backbone with timm's own layer groups.

- Layer groups come from the model's ``group_matcher`` (what timm uses for layer-wise lr decay):
  ``model.split=coarse`` (the default: stem, one group per stage, head) or ``fine`` (one per block). What the
  matcher leaves out (the classifier) is the last group, ``head``. Each group is named by the module its
  parameters share (``layer1``, ``stages.0``, ``blocks.3``) or by its modules (``blocks.5+norm``: timm puts
  a final norm with the last stage), the first ``stem``, the last ``head``.
- The new head comes through ``reset_classifier(num_classes)``; ``model.drop_rate`` is timm's dropout
  before the classifier.
- Weights: ``model.pretrained=true`` reads the model's pretrained file from the local Hugging Face / torch hub
  cache (nothing is downloaded unless ``model.download=true``); ``model.weights=<file>`` reads a local file
  (safetensors or torch.save, as data). Either way timm's own loader applies (its checkpoint filters, a first
  conv adapted to other channel counts), and the weights' ``pretrained_cfg`` preprocessing is used
  (:mod:`harness.models.pretrained`).
- The frozen-prefix cache is exact when every group but the head is frozen and static and the model's
  ``forward_features`` uses no parameter of the head group (checked on a dry run at build time): the prefix
  is ``forward_features``, the trained part ``forward_head``.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import torch
from torch import nn

from harness.config.checks import flat_message
from harness.errors import ConfigError
from harness.models.groups import GroupedModel, LayerGroup, finish
from harness.models.pretrained import check_timm_arch, timm_cached_file

MAX_GROUP = 99999  # timm's ordinal for what its matcher leaves to the end (classifier, final norm)


class Features(nn.Module):
    """The net's ``forward_features``: the frozen prefix of a timm model."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.forward_features(x)


class Head(nn.Module):
    """The net's ``forward_head``: what trains on cached features."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.forward_head(x)


def build_timm(cfg: dict, *, num_classes: int, in_channels: int, image_size: int) -> GroupedModel:
    import timm

    arch = cfg.get("arch")
    if not arch:
        raise ConfigError(
            "model.arch is not set; model=timm needs a timm model name, e.g. model.arch=resnet50"
        )
    check_timm_arch(arch)
    weights, pretrained = cfg.get("weights"), bool(cfg.get("pretrained", False))
    kwargs = {"in_chans": in_channels, "drop_rate": float(cfg.get("drop_rate", 0.0))}
    if _takes_img_size(arch, kwargs):
        kwargs["img_size"] = image_size  # ViT-like models fix their position embeddings to the input size
    state = None
    if weights is not None:
        state = _read_file(str(weights))
    elif pretrained:
        if cfg.get("download", False):
            state = "download"
        else:
            state = _read_file(timm_cached_file(arch))
    try:
        if state == "download":
            net = timm.create_model(arch, pretrained=True, **kwargs)
        elif state is not None:
            # timm's own loading (its checkpoint filter, a first conv for other channel counts), from our data
            net = timm.create_model(
                arch, pretrained=True, pretrained_cfg_overlay={"state_dict": state}, **kwargs
            )
        else:
            net = timm.create_model(arch, pretrained=False, **kwargs)
    except (RuntimeError, KeyError, ValueError) as e:
        where = f"model.weights={weights}" if weights is not None else f"the pretrained weights of {arch}"
        raise ConfigError(f"{where} do not match model.arch={arch}: {_mismatch(e)}") from None
    net.reset_classifier(num_classes)

    split = cfg.get("split", "coarse")
    groups = timm_groups(net, coarse=split == "coarse")
    model = finish(cfg, net, groups)
    used = _check_forward(net, arch, num_classes, in_channels, image_size)
    head_params = {n for n, _ in net.named_parameters() if model.groups[-1].owns(n)}
    if cfg.get("groups") is None and not (used & head_params):
        model.body_and_head = (Features(net), Head(net))
    return model


def timm_groups(net: nn.Module, *, coarse: bool) -> list[LayerGroup]:
    """Layer groups from ``net.group_matcher``: each group given by the fewest module (or parameter) names
    that own exactly its parameters, in timm's order; what the matcher leaves over is the last group."""
    from timm.models._manipulate import group_parameters

    ordinals = group_parameters(net, net.group_matcher(coarse=coarse))
    group_of = {name: i for i, names in enumerate(ordinals.values()) for name in names}
    prefixes: list[list[str]] = [[] for _ in ordinals]
    claimed: set[str] = set()
    for name, module in net.named_modules():
        if not name or any(name.startswith(c + ".") for c in claimed):
            continue
        own = [f"{name}.{p}" for p, _ in module.named_parameters()]
        owners = {group_of[p] for p in own}
        if len(owners) == 1:
            prefixes[owners.pop()].append(name)
            claimed.add(name)
    for name, _ in net.named_parameters(recurse=False):  # on the root itself (cls_token, pos_embed)
        prefixes[group_of[name]].append(name)
    names = _group_names(prefixes)
    return [LayerGroup(n, tuple(p)) for n, p in zip(names, prefixes, strict=True) if p]


def _group_names(prefixes: list[list[str]]) -> list[str]:
    names = []
    for i, owned in enumerate(prefixes):
        common = os.path.commonprefix([p + "." for p in owned]).rpartition(".")[0] if owned else ""
        if i == 0:
            name = "stem"
        elif i == len(prefixes) - 1:
            name = "head"
        else:  # timm may put a stage and the final norm together (blocks.5 + norm): name both
            name = common or ("+".join(owned) if len(owned) <= 3 else f"group{i}")
        names.append(name if name not in names else f"{name}_{i}")
    return names


def _takes_img_size(arch: str, kwargs: dict) -> bool:
    """Whether the model class takes ``img_size`` (built once, cheaply, on the meta device to find out)."""
    import timm

    try:
        with torch.device("meta"):
            probe = timm.create_model(arch, pretrained=False, **kwargs)
    except Exception:  # a model that cannot be built on meta: built as it comes (its dry run says if it fits)
        return False
    return "img_size" in inspect.signature(type(probe).__init__).parameters


def _read_file(path: str) -> dict[str, torch.Tensor]:
    """A timm weights file as data: safetensors, or a torch.save state_dict (weights_only)."""
    if not Path(path).is_file():
        raise ConfigError(f"model.weights: file '{path}' does not exist")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            for key in ("state_dict", "model"):  # timm's train script saves {"state_dict": ...}
                if isinstance(state, dict) and isinstance(state.get(key), dict):
                    state = state[key]
    except Exception as e:
        raise ConfigError(f"model.weights: file '{path}' could not be read: {flat_message(e)}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"model.weights: file '{path}' is not a state_dict (a mapping of names to tensors)")
    return state


def _mismatch(error: RuntimeError) -> str:
    """torch's multi-line load_state_dict error as one line: the first keys that disagree."""
    text = " ".join(str(error).split())
    text = text.split("Error(s) in loading state_dict for ", 1)[-1]
    return text[:300] + ("..." if len(text) > 300 else "")


def _check_forward(
    net: nn.Module, arch: str, num_classes: int, in_channels: int, image_size: int
) -> set[str]:
    """Dry-run the net on the data's shape (one line when it does not fit) and return the parameters its
    ``forward_features`` uses (the prefix cache is exact only when the head group is not among them)."""
    used: set[str] = set()
    names = {m: n for n, m in net.named_modules()}
    hooks = [
        m.register_forward_hook(
            lambda m, i, o: used.update(
                f"{names[m]}.{p}".lstrip(".") for p, _ in m.named_parameters(recurse=False)
            )
        )
        for m in net.modules()
    ]
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            x = torch.zeros(2, in_channels, image_size, image_size)
            features = net.forward_features(x)
            for h in hooks:
                h.remove()
            out = net.forward_head(features)
    except Exception as e:
        raise ConfigError(
            f"model.arch={arch} does not accept {in_channels}x{image_size}x{image_size} input "
            f"(data.image_size, data.channels): "
            f"{flat_message(e)}"
        ) from None
    finally:
        for h in hooks:
            h.remove()
        net.train(was_training)
    if tuple(out.shape) != (2, num_classes):
        raise ConfigError(
            f"model.arch: the net returns {tuple(out.shape)} logits, not (batch, {num_classes})"
        )
    # Parameters read directly by the root's forward_features (cls_token, pos_embed) count as used.
    return used | {n for n, _ in net.named_parameters(recurse=False)}


__all__ = ["Features", "Head", "build_timm", "timm_groups"]
