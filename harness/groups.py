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
    run once and cached (see :mod:`harness.prefix`).
    """

    net: nn.Module
    groups: list[LayerGroup]
    sequential: bool = False

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
    """Build groups from config: a list of ``{name: ..., modules: [prefix, ...]}``."""
    groups = []
    for i, item in enumerate(spec):
        if "name" not in item or "modules" not in item:
            raise ConfigError(
                f"model.groups[{i}] must have 'name' and 'modules' (a list of module-name prefixes)"
            )
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
    known = {name for name, _ in model.net.named_modules()}
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
    """The top-most modules named by each group's prefixes."""
    lookup = dict(model.net.named_modules())
    return [[lookup[p] for p in g.prefixes] for g in model.groups]


def norm_layers(modules: list[nn.Module]) -> list[nn.Module]:
    """Every normalisation layer inside ``modules`` (BatchNorm, LayerNorm, GroupNorm...)."""
    found = []
    for m in modules:
        found.extend(sub for sub in m.modules() if isinstance(sub, NORM_TYPES))
    return found
