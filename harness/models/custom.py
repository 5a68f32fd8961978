"""``model=custom``: any ``nn.Module`` reachable by Hydra ``_target_``, with a user-given split and head."""

from __future__ import annotations

import torch
from torch import nn

from harness.config import schema
from harness.config.checks import flat_message
from harness.errors import ConfigError
from harness.models.groups import GroupedModel, finish, head_module_name, top_level


def build_custom(cfg: dict, *, num_classes: int, in_channels: int, image_size: int) -> GroupedModel:
    """Any ``nn.Module`` by Hydra ``_target_`` (``model.net``) with a user split and a named head."""
    from hydra.utils import instantiate  # only custom models need Hydra's instantiation machinery

    # The types of net, groups and head were checked by the schema (build_model); these need to be set.
    spec = schema.net(cfg.get("net"), "model.net")
    if cfg.get("groups") is None:
        raise ConfigError(
            "model.groups is required for model 'custom': a list of {name, modules: [prefix, ...]}"
        )
    # `head: 9` for a Sequential child is as good as `head: "9"`
    head_name = str(schema.head(cfg.get("head"), "model.head"))

    try:
        net = instantiate(spec)
    except Exception as e:  # Hydra wraps import and constructor errors alike; all are the user's config
        raise ConfigError(f"model.net could not be instantiated: {flat_message(e)}") from None
    if not isinstance(net, nn.Module):
        raise ConfigError(f"model.net must build a torch.nn.Module, got {type(net).__name__}")

    try:
        head = net.get_submodule(head_name)
    except AttributeError:
        raise ConfigError(
            f"model.head '{head_name}' is not a module of model.net; {top_level(net)}"
        ) from None
    if not isinstance(head, nn.Linear):
        raise ConfigError(f"model.head '{head_name}' is a {type(head).__name__}; it must be an nn.Linear")
    if head.out_features != num_classes:
        # Only the head changes with the class count; its input width is whatever the net feeds it.
        parent_name, _, leaf = head_name.rpartition(".")
        parent = net.get_submodule(parent_name) if parent_name else net
        setattr(parent, leaf, nn.Linear(head.in_features, num_classes, bias=head.bias is not None))

    model = finish(cfg, net, groups=None)
    if head_module_name(model) != head_name:
        raise ConfigError(
            f"model.head '{head_name}' must be the last nn.Linear of the last layer group "
            f"'{model.groups[-1].name}' (found: {head_module_name(model)})"
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
            f"model.net does not accept {in_channels}x{image_size}x{image_size} input: {flat_message(e)}"
        ) from None
    finally:
        net.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"model.net must return (batch, {num_classes}) logits, returned {shape}")
