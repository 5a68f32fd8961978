"""Model builders: each returns a :class:`~harness.groups.GroupedModel` (network + ordered layer groups).

Config group ``conf/model/<name>.yaml``; ``model.name`` picks the builder:

- ``convnet``: a plain CNN in the style of Yosinski et al. (2014), one weight layer per group
  (``conv1 .. convN, fc1 .. fcM, head``), so "the first n layers" of the paper is "the first n groups".
- ``resnet18`` / ``resnet34`` / ``resnet50``: torchvision architectures (never downloaded), re-wrapped as an
  ``nn.Sequential`` of ``stem, layer1..layer4, head`` so a frozen prefix can be run on its own.
- ``custom``: any module reachable by Hydra ``_target_`` plus a user-given split.

All builders share the last steps (:func:`_finish`): an optional user split from ``model.groups``, the check
that every parameter sits in exactly one group (so a bad split fails at build time, not mid-run), and the
check that the head is the last ``nn.Linear`` of the last group.

Changing the number of classes replaces the head (the final ``nn.Linear``) and nothing else.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from harness.errors import ConfigError
from harness.groups import GroupedModel, LayerGroup, group_parameters, groups_from_config

RESNET_SPLITS = ("groups6", "fastai3")


# --------------------------------------------------------------------------------------------- public API


def build_model(model_cfg, *, num_classes: int, in_channels: int, image_size: int) -> GroupedModel:
    """Build the network of ``model_cfg`` (the ``model`` config group) for the given data shape.

    Groups are ordered input side first, head last. Raises :class:`ConfigError` for any bad config.
    """
    cfg = _plain(model_cfg)
    name = cfg.get("name")
    if name not in BUILDERS:
        raise ConfigError(f"model.name '{name}' is unknown; allowed: {', '.join(sorted(BUILDERS))}")
    allowed_keys = ALLOWED_KEYS[name]
    for key in cfg:
        if key not in allowed_keys:
            raise ConfigError(
                f"model.{key} is not a key of model '{name}'; allowed: {', '.join(sorted(allowed_keys))}"
            )
    return BUILDERS[name](cfg, num_classes=num_classes, in_channels=in_channels, image_size=image_size)


def head_layer(model: GroupedModel) -> nn.Linear:
    """The final classifier layer: the last ``nn.Linear`` inside the last group."""
    qualified = _head_name(model)
    if qualified is None:
        raise ConfigError(
            f"layer group '{model.groups[-1].name}' (the last one) holds no nn.Linear; the head must be last"
        )
    return model.net.get_submodule(qualified)


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


def load_weights(
    model: GroupedModel, path: str, *, strict_shapes: bool = True, skip_head: bool = False
) -> None:
    """Load a state_dict (saved with ``torch.save(model.net.state_dict(), path)``) into ``model.net``.

    - ``skip_head=True``: the head's entries are not loaded (the head keeps its current weights) and may
      have another class count in the file; this is how pretrained weights meet a new number of classes.
    - ``strict_shapes=False``: entries whose shape differs are skipped instead of being an error (keys must
      still match). With the default, any mismatch is a :class:`ConfigError` naming the file and the key.
    """
    state = _read_state_dict(path, what="weights file")
    skip: set[str] = set()
    if skip_head:
        head_layer(model)  # a clear error when the model has no head to skip
        head = _head_name(model)
        skip = {f"{head}.{n}" for n, _ in model.net.get_submodule(head).state_dict().items()}
    expected = model.net.state_dict()
    to_load = _matching_entries(
        expected, state, source=f"weights file '{path}'", skip=skip, strict_shapes=strict_shapes
    )
    # Every key was checked above; strict=False only because skipped entries are deliberately absent.
    model.net.load_state_dict(to_load, strict=False)


# --------------------------------------------------------------------------------------------- convnet


def build_convnet(cfg: dict, *, num_classes: int, in_channels: int, image_size: int) -> GroupedModel:
    """conv1..convN -> fc1..fcM -> head, one weight layer per group, as an ``nn.Sequential`` of groups."""
    channels = _int_list(cfg, "channels")
    hidden = _int_list(cfg, "hidden")
    kernel_size = int(cfg.get("kernel_size", 3))
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ConfigError(
            f"model.kernel_size must be an odd integer >= 1 ('same' padding), got {kernel_size}"
        )
    batchnorm = bool(cfg.get("batchnorm", False))
    dropout = float(cfg.get("dropout", 0.0))
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"model.dropout must be in [0, 1), got {dropout}")
    pool = cfg.get("pool")
    if pool is None:
        pool = [True] * len(channels)
    if not isinstance(pool, list) or len(pool) != len(channels):
        raise ConfigError(
            f"model.pool must be null (pool after every conv layer) or a list of {len(channels)} true/false "
            f"(one per entry of model.channels), got {pool}"
        )

    children: OrderedDict[str, nn.Module] = OrderedDict()
    size, c_in = image_size, in_channels
    for i, (c_out, do_pool) in enumerate(zip(channels, pool, strict=True), start=1):
        # 'same' padding: only pooling shrinks the map, so the flattened size is easy to reason about.
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=not batchnorm)
        ]
        if batchnorm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
        # A 2x2 pool needs at least a 2x2 map: on small images (8x8 digits) the late pools are skipped.
        if do_pool and size >= 2:
            layers.append(nn.MaxPool2d(2))
            size //= 2
        children[f"conv{i}"] = nn.Sequential(*layers)
        c_in = c_out

    flat = _flat_features(nn.Sequential(children), in_channels, image_size)
    for i, width in enumerate(hidden, start=1):
        layers = [nn.Flatten()] if i == 1 else []
        layers.append(nn.Linear(flat, width, bias=not batchnorm))
        if batchnorm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(nn.ReLU(inplace=True))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        children[f"fc{i}"] = nn.Sequential(*layers)
        flat = width
    head = nn.Linear(flat, num_classes)
    children["head"] = nn.Sequential(nn.Flatten(), head) if not hidden else head

    net = nn.Sequential(children)
    groups = [LayerGroup(name, (name,)) for name in children]
    return _finish(cfg, net, groups)


def _flat_features(features: nn.Module, in_channels: int, image_size: int) -> int:
    """Flattened size of the conv stack's output, by a dry run (no formula to keep in sync)."""
    with torch.no_grad():
        features.eval()
        out = features(torch.zeros(1, in_channels, image_size, image_size))
        features.train()
    return out[0].numel()


# --------------------------------------------------------------------------------------------- resnets


def build_resnet(cfg: dict, *, num_classes: int, in_channels: int, image_size: int) -> GroupedModel:
    """A torchvision ResNet (weights=None) re-wrapped as ``stem, layer1..layer4, head``."""
    import torchvision  # imported here: only the resnets need it, and it is slow to import

    split = cfg.get("split", "groups6")
    if split not in RESNET_SPLITS:
        raise ConfigError(f"model.split '{split}' is unknown; allowed: {', '.join(RESNET_SPLITS)}")
    arch = cfg["name"]
    tv = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)

    weights = cfg.get("weights")
    if weights is not None:
        state = _read_state_dict(str(weights), what="model.weights: file")
        expected = tv.state_dict()
        # The classifier may be trained for another class count: then it stays freshly initialised.
        skip = {k for k in ("fc.weight", "fc.bias") if k in state and state[k].shape != expected[k].shape}
        to_load = _matching_entries(
            expected, state, source=f"model.weights: file '{weights}' (torchvision {arch} format)", skip=skip
        )
        tv.load_state_dict(to_load, strict=False)

    if in_channels != 3:
        tv.conv1 = _adapt_first_conv(tv.conv1, in_channels, pretrained=weights is not None)

    net = nn.Sequential(
        OrderedDict(
            stem=nn.Sequential(OrderedDict(conv1=tv.conv1, bn1=tv.bn1, relu=tv.relu, maxpool=tv.maxpool)),
            layer1=tv.layer1,
            layer2=tv.layer2,
            layer3=tv.layer3,
            layer4=tv.layer4,
            # Adaptive pooling: runs on 8x8 as well as 224x224 inputs.
            head=nn.Sequential(OrderedDict(avgpool=tv.avgpool, flatten=nn.Flatten(1), fc=tv.fc)),
        )
    )
    if split == "groups6":
        groups = [LayerGroup(name, (name,)) for name in net._modules]
    else:
        # fastai's _resnet_split: L(m[0][:6], m[0][6:], m[1:]) where m[0] is the body
        # [conv1, bn1, relu, maxpool, layer1, layer2, layer3, layer4]: cut before layer3 and before the head.
        groups = [
            LayerGroup("body1", ("stem", "layer1", "layer2")),
            LayerGroup("body2", ("layer3", "layer4")),
            LayerGroup("head", ("head",)),
        ]
    return _finish(cfg, net, groups)


def _adapt_first_conv(conv: nn.Conv2d, in_channels: int, *, pretrained: bool) -> nn.Conv2d:
    """conv1 for ``in_channels`` inputs; from pretrained RGB kernels the way fastai does it
    (``_load_pretrained_weights``): 1 channel = sum over RGB, 2 = first two x 1.5, more = RGB then zeros."""
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        bias=conv.bias is not None,
    )
    if not pretrained:
        # The same init torchvision gives every ResNet conv, so conv1 is not the odd one out.
        nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    else:
        rgb = conv.weight.detach()
        with torch.no_grad():
            if in_channels == 1:
                new.weight.copy_(rgb.sum(dim=1, keepdim=True))
            elif in_channels == 2:
                new.weight.copy_(rgb[:, :2] * 1.5)
            else:
                new.weight.zero_()
                new.weight[:, :3] = rgb
    return new


# --------------------------------------------------------------------------------------------- custom


def build_custom(cfg: dict, *, num_classes: int, in_channels: int, image_size: int) -> GroupedModel:
    """Any ``nn.Module`` by Hydra ``_target_`` (``model.net``) with a user split and a named head."""
    from hydra.utils import instantiate  # only custom models need Hydra's instantiation machinery

    spec = cfg.get("net")
    if not isinstance(spec, Mapping) or "_target_" not in spec:
        raise ConfigError(
            "model.net must be a mapping with '_target_' (e.g. torch.nn.Sequential) and its kwargs"
        )
    if cfg.get("groups") is None:
        raise ConfigError(
            "model.groups is required for model 'custom': a list of {name, modules: [prefix, ...]}"
        )
    head_name = cfg.get("head")
    if isinstance(head_name, int):  # `head: 9` for a Sequential child is as good as `head: "9"`
        head_name = str(head_name)
    if not isinstance(head_name, str) or not head_name:
        raise ConfigError(
            "model.head is required for model 'custom': the qualified name of the final nn.Linear"
        )

    try:
        net = instantiate(spec)
    except Exception as e:  # Hydra wraps import and constructor errors alike; all are the user's config
        raise ConfigError(f"model.net could not be instantiated: {_one_line(e)}") from None
    if not isinstance(net, nn.Module):
        raise ConfigError(f"model.net must build a torch.nn.Module, got {type(net).__name__}")

    try:
        head = net.get_submodule(head_name)
    except AttributeError:
        raise ConfigError(
            f"model.head '{head_name}' is not a module of model.net; {_top_level(net)}"
        ) from None
    if not isinstance(head, nn.Linear):
        raise ConfigError(f"model.head '{head_name}' is a {type(head).__name__}; it must be an nn.Linear")
    if head.out_features != num_classes:
        # Only the head changes with the class count; its input width is whatever the net feeds it.
        parent_name, _, leaf = head_name.rpartition(".")
        parent = net.get_submodule(parent_name) if parent_name else net
        setattr(parent, leaf, nn.Linear(head.in_features, num_classes, bias=head.bias is not None))

    model = _finish(cfg, net, groups=None)
    if _head_name(model) != head_name:
        raise ConfigError(
            f"model.head '{head_name}' must be the last nn.Linear of the last layer group "
            f"'{model.groups[-1].name}' (found: {_head_name(model)})"
        )
    _check_forward(net, num_classes=num_classes, in_channels=in_channels, image_size=image_size)
    return model


def _check_forward(net: nn.Module, *, num_classes: int, in_channels: int, image_size: int) -> None:
    """Dry-run a user's net so a wrong input shape fails at build time with one clear line."""
    was_training = net.training
    net.eval()  # eval: batch statistics must not change, and BatchNorm accepts any batch size
    try:
        with torch.no_grad():
            out = net(torch.zeros(2, in_channels, image_size, image_size))
    except Exception as e:
        raise ConfigError(
            f"model.net does not accept {in_channels}x{image_size}x{image_size} input: {_one_line(e)}"
        ) from None
    finally:
        net.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"model.net must return (batch, {num_classes}) logits, returned {shape}")


# --------------------------------------------------------------------------------------------- shared steps


def _finish(cfg: dict, net: nn.Module, groups: list[LayerGroup] | None) -> GroupedModel:
    """Apply a user split (``model.groups``), then check the split covers every parameter exactly once."""
    user_split = cfg.get("groups")
    if user_split is not None:
        if not isinstance(user_split, list) or not user_split:
            raise ConfigError(
                "model.groups must be null or a non-empty list of {name, modules: [prefix, ...]}"
            )
        groups = groups_from_config(user_split)
        known = {name for name, _ in net.named_modules()}
        for i, g in enumerate(groups):
            for prefix in g.prefixes:
                if prefix not in known:
                    raise ConfigError(
                        f"model.groups[{i}] ('{g.name}') names module '{prefix}', "
                        f"which the net does not have; {_top_level(net)}"
                    )
    model = GroupedModel(net, groups, sequential=_is_sequential(net, groups))
    try:
        group_parameters(model)
    except ConfigError as e:
        raise ConfigError(f"model.groups: {e}") from None
    if _head_name(model) is None:
        raise ConfigError(
            f"model.groups: the last group '{groups[-1].name}' holds no nn.Linear; "
            "the head must be in the last group"
        )
    return model


def _is_sequential(net: nn.Module, groups: list[LayerGroup]) -> bool:
    """True when the groups, in order, are runs of consecutive top-level children covering all of them:
    then ``net[:k]`` computes exactly the first groups and a frozen prefix can be run once and cached."""
    if not isinstance(net, nn.Sequential):
        return False
    claimed = [prefix for g in groups for prefix in g.prefixes]
    return claimed == list(net._modules)


def _head_name(model: GroupedModel) -> str | None:
    """Qualified name of the last ``nn.Linear`` inside the last group (None if there is none)."""
    last = model.groups[-1]
    found = None
    for name, module in model.net.named_modules():
        if isinstance(module, nn.Linear) and last.owns(name):
            found = name
    return found


def _read_state_dict(path: str, *, what: str) -> dict[str, torch.Tensor]:
    if not Path(path).is_file():
        raise ConfigError(f"{what} '{path}' does not exist")
    try:
        # weights_only: a weights file is data, never a way to run code.
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:
        raise ConfigError(
            f"{what} '{path}' could not be read (truncated, corrupt or not torch.save): {_one_line(e)}"
        ) from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{what} '{path}' is not a state_dict (a mapping of names to tensors)")
    return dict(state)


def _matching_entries(
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


def _int_list(cfg: dict, key: str) -> list[int]:
    value = cfg.get(key, [])
    if value is None:
        value = []
    if not isinstance(value, list) or not all(isinstance(v, int) and v > 0 for v in value):
        raise ConfigError(f"model.{key} must be a list of positive integers (e.g. [32, 64]), got {value}")
    return value


def _top_level(net: nn.Module) -> str:
    names = list(net._modules)
    return f"its top-level modules: {', '.join(names) if names else '(none)'}"


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


BUILDERS = {
    "convnet": build_convnet,
    "resnet18": build_resnet,
    "resnet34": build_resnet,
    "resnet50": build_resnet,
    "custom": build_custom,
}

_RESNET_KEYS = {"name", "split", "weights", "groups"}
ALLOWED_KEYS = {
    "convnet": {"name", "channels", "kernel_size", "pool", "hidden", "batchnorm", "dropout", "groups"},
    "resnet18": _RESNET_KEYS,
    "resnet34": _RESNET_KEYS,
    "resnet50": _RESNET_KEYS,
    "custom": {"name", "net", "groups", "head"},
}
