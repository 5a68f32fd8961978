"""Layer groups: the ordered split of a model that freezing and learning rates act on.

A group is a name plus the module-name prefixes it owns (``"layer1"``, ``"fc"``, ``"0.conv"``).
Groups are ordered input side first, head last. Every parameter of the model belongs to exactly one
group; :func:`group_parameters` checks this, so a user-given split that forgets a layer fails loudly
instead of leaving that layer silently untrained (or silently trained).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from harness.errors import ConfigError

NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


@dataclass(frozen=True)
class LayerGroup:
    name: str
    prefixes: tuple[str, ...]

    def owns(self, qualified_name: str) -> bool:
        return any(qualified_name == p or qualified_name.startswith(p + ".") for p in self.prefixes)


@dataclass
class GroupedModel:
    """A network and its ordered layer groups.

    ``sequential`` is true when ``net`` is an ``nn.Sequential`` whose children, in order, are exactly
    the groups' modules (each group a run of consecutive children). Only then can a frozen prefix be
    run once and cached (see :mod:`harness.engine.prefix`).
    """

    net: nn.Module
    groups: list[LayerGroup]
    sequential: bool = False
    # A net that is no Sequential but can run everything before its head group on its own (timm's
    # forward_features / forward_head, harness/models/timm_models.py): the two modules, for the prefix cache.
    body_and_head: tuple[nn.Module, nn.Module] | None = None

    @property
    def names(self) -> list[str]:
        return [g.name for g in self.groups]

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise ConfigError(
                f"layer group '{name}' does not exist; groups of this model: {', '.join(self.names)}"
            ) from None


def groups_from_config(spec) -> list[LayerGroup]:
    """Build groups from config: a list of ``{name: ..., modules: [prefix, ...]}`` (its shape checked by the
    schema, :func:`harness.config.schema.layer_groups`)."""
    groups = []
    for item in spec:
        modules = item["modules"]
        if isinstance(modules, str):
            modules = [modules]
        groups.append(LayerGroup(str(item["name"]), tuple(str(m) for m in modules)))
    return groups


def _owner(groups: list[LayerGroup], qualified_name: str) -> int | None:
    owners = [i for i, g in enumerate(groups) if g.owns(qualified_name)]
    if len(owners) > 1:
        names = ", ".join(groups[i].name for i in owners)
        raise ConfigError(
            f"parameter '{qualified_name}' is claimed by several layer groups ({names}); give each module to one group"
        )
    return owners[0] if owners else None


def group_parameters(model: GroupedModel) -> list[list[nn.Parameter]]:
    """The parameters of each group, in group order; every parameter in exactly one group."""
    groups = model.groups
    names = [g.name for g in groups]
    if len(set(names)) != len(names):
        raise ConfigError(f"layer group names must be unique, got: {', '.join(names)}")
    known = _names(model.net)
    for g in groups:
        for p in g.prefixes:
            if p not in known:
                raise ConfigError(f"layer group '{g.name}' names module '{p}', which the model does not have")
    params: list[list[nn.Parameter]] = [[] for _ in groups]
    for qname, param in model.net.named_parameters():
        i = _owner(groups, qname)
        if i is None:
            raise ConfigError(
                f"parameter '{qname}' belongs to no layer group; add its module to model.groups"
            )
        params[i].append(param)
    return params


def group_modules(model: GroupedModel) -> list[list[nn.Module]]:
    """The top-most modules named by each group's prefixes (a prefix that names a parameter of the root, as
    timm's ``cls_token``, has no module)."""
    lookup = dict(model.net.named_modules())
    return [[lookup[p] for p in g.prefixes if p in lookup] for g in model.groups]


def _names(net: nn.Module) -> set[str]:
    """What a group may name: modules, and parameters that sit directly on the root (timm's ``pos_embed``)."""
    return {name for name, _ in net.named_modules()} | {
        name for name, _ in net.named_parameters(recurse=False)
    }


def norm_layers(modules: list[nn.Module]) -> list[nn.Module]:
    """Every normalisation layer inside ``modules`` (BatchNorm, LayerNorm, GroupNorm...)."""
    found = []
    for m in modules:
        found.extend(sub for sub in m.modules() if isinstance(sub, NORM_TYPES))
    return found


def head_layer(model: GroupedModel) -> nn.Linear:
    """The final classifier layer: the last ``nn.Linear`` inside the last group."""
    qualified = head_module_name(model)
    if qualified is None:
        raise ConfigError(
            f"layer group '{model.groups[-1].name}' (the last one) holds no nn.Linear; the head must be last"
        )
    return model.net.get_submodule(qualified)


def finish(cfg: dict, net: nn.Module, groups: list[LayerGroup] | None) -> GroupedModel:
    """Apply a user split (``model.groups``), then check the split covers every parameter exactly once."""
    user_split = cfg.get("groups")
    if user_split is not None:
        groups = groups_from_config(user_split)
        known = _names(net)
        for i, g in enumerate(groups):
            for prefix in g.prefixes:
                if prefix not in known:
                    raise ConfigError(
                        f"model.groups[{i}] ('{g.name}') names module '{prefix}', "
                        f"which the net does not have; {top_level(net)}"
                    )
    model = GroupedModel(net, groups, sequential=is_sequential(net, groups))
    try:
        group_parameters(model)
    except ConfigError as e:
        raise ConfigError(f"model.groups: {e}") from None
    if head_module_name(model) is None:
        raise ConfigError(
            f"model.groups: the last group '{groups[-1].name}' holds no nn.Linear; "
            "the head must be in the last group"
        )
    return model


def is_sequential(net: nn.Module, groups: list[LayerGroup]) -> bool:
    """True when the groups, in order, are runs of consecutive top-level children covering all of them:
    then ``net[:k]`` computes exactly the first groups and a frozen prefix can be run once and cached."""
    if not isinstance(net, nn.Sequential):
        return False
    claimed = [prefix for g in groups for prefix in g.prefixes]
    return claimed == list(net._modules)


def head_module_name(model: GroupedModel) -> str | None:
    """Qualified name of the last ``nn.Linear`` inside the last group (None if there is none)."""
    last = model.groups[-1]
    found = None
    for name, module in model.net.named_modules():
        if isinstance(module, nn.Linear) and last.owns(name):
            found = name
    return found


def top_level(net: nn.Module) -> str:
    names = list(net._modules)
    return f"its top-level modules: {', '.join(names) if names else '(none)'}"
