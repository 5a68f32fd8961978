"""``model=resnet18|34|50``: torchvision architectures (weights by name from the local hub cache, or a file;
downloaded only with ``model.download=true``: :mod:`harness.models.pretrained`), re-wrapped as an ``nn.Sequential``
of ``stem, layer1..layer4, head`` so a frozen prefix can be run on its own."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from harness.config.schema import RESNET_SPLITS
from harness.models.groups import GroupedModel, LayerGroup, finish
from harness.models.pretrained import torchvision_file
from harness.models.weights import matching_entries, read_state_dict

__all__ = ["RESNET_SPLITS", "build_resnet"]


def build_resnet(cfg: dict, *, num_classes: int, in_channels: int, image_size: int) -> GroupedModel:
    """A torchvision ResNet (weights=None) re-wrapped as ``stem, layer1..layer4, head``."""
    import torchvision  # imported here: only the resnets need it, and it is slow to import

    split = cfg.get("split", "groups6")  # one of RESNET_SPLITS: checked by the schema (build_model)
    arch = cfg["name"]
    tv = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)

    weights = cfg.get("weights")
    if weights is not None:
        # A weights name (IMAGENET1K_V1, DEFAULT) is its file in torchvision's hub cache; else a path.
        path = torchvision_file(arch, str(weights), download=bool(cfg.get("download", False)))
        state = read_state_dict(path, what="model.weights: file")
        expected = tv.state_dict()
        # The classifier may be trained for another class count: then it stays freshly initialised.
        skip = {k for k in ("fc.weight", "fc.bias") if k in state and state[k].shape != expected[k].shape}
        to_load = matching_entries(
            expected, state, source=f"model.weights: file '{path}' (torchvision {arch} format)", skip=skip
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
    return finish(cfg, net, groups)


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
