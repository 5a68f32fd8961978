"""Yosinski, Clune, Bengio and Lipson (2014), "How transferable are features in deep neural networks?", in
plain PyTorch: an oracle for the harness, written from the paper's description.

Split the classes into halves A and B; train baseA on A and baseB on B from scratch; for n = 1 .. L-1 train on
B a network whose first n weight layers are copied from a base and whose layers n+1 .. L are re-initialised:
BnB (copied from baseB, frozen), BnB+ (copied from baseB, trained at the same rate), AnB and AnB+ (the same
from baseA). Frozen = learning rate 0 and no weight decay. Metric: top-1 test accuracy on B.

What the paper leaves open is an input, not decided here:
- ``data``: per half (train x, train y, test x, test y), already normalised, labels 0 .. m-1 within the half;
- ``init``: each network's initial weights, a state_dict with values in layer order (weight, bias of layer 1,
  then layer 2, ...); a treatment's re-initialised layers, the head included, are its own draw;
- ``seeds``, ``Recipe.epoch_seed``: epoch e visits the training set in the order ``torch.randperm(N)`` of a
  generator seeded with ``epoch_seed(seeds[network], e)``, in batches of ``batch_size`` (the last shorter);
- ``Recipe``, one for bases and treatments: SGD with momentum in PyTorch's form (v = momentum * v + g +
  weight_decay * w; w -= rate * v; Caffe, which the paper used, puts the rate inside v, which differs only
  after a rate drop), weight decay on weights only (the paper's net gives biases none), rate = lr * gamma **
  (epoch // step_size) per epoch;
- ``Shape``: per conv layer a 'same'-padded conv, ReLU and 2x2 max pool; per hidden layer a linear layer and
  ReLU; a linear head. No batchnorm, dropout or augmentation.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# treatment -> (half of the base its first n layers come from, whether those layers are frozen)
TREATMENTS = {"BnB": ("B", True), "BnB+": ("B", False), "AnB": ("A", True), "AnB+": ("A", False)}


@dataclass(frozen=True)
class Shape:
    in_channels: int
    image_size: int
    channels: tuple[int, ...]
    hidden: tuple[int, ...]
    kernel_size: int = 3


@dataclass(frozen=True)
class Recipe:
    epochs: int
    lr: float
    momentum: float
    weight_decay: float
    step_size: int  # epochs between rate drops
    gamma: float  # factor of each drop
    batch_size: int
    epoch_seed: Callable[[int, int], int]  # (network's seed, epoch) -> seed of that epoch's batch order


def convnet(shape: Shape, num_classes: int, state: dict) -> nn.Sequential:
    """One block per weight layer, input side first ("the first n layers" are ``net[:n]``), from ``state``."""
    blocks, c, size, k = [], shape.in_channels, shape.image_size, shape.kernel_size
    for width in shape.channels:
        blocks.append(nn.Sequential(nn.Conv2d(c, width, k, padding=k // 2), nn.ReLU(), nn.MaxPool2d(2)))
        c, size = width, size // 2
    features = c * size * size
    for width in shape.hidden:
        blocks.append(nn.Sequential(nn.Flatten(), nn.Linear(features, width), nn.ReLU()))
        features = width
    blocks.append(nn.Sequential(nn.Flatten(), nn.Linear(features, num_classes)))
    net = nn.Sequential(*blocks)
    params, values = list(net.parameters()), list(state.values())
    assert [p.shape for p in params] == [v.shape for v in values], "initial weights of another shape"
    with torch.no_grad():
        for p, v in zip(params, values, strict=True):
            p.copy_(v)
    return net


@torch.no_grad()
def evaluate(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    net.eval()
    logits = net(x)
    net.train()
    return F.cross_entropy(logits, y).item(), int((logits.argmax(1) == y).sum()) / len(y)


def train(net: nn.Sequential, data, recipe: Recipe, seed: int, layers) -> list[tuple[float, float]]:
    """SGD on the blocks in ``layers``; every other block has rate 0 and no weight decay: it never changes."""
    x, y, x_test, y_test = data
    params = [p for i in layers for p in net[i].parameters()]
    velocity: list[torch.Tensor | None] = [None] * len(params)
    history = []
    for epoch in range(recipe.epochs):
        rate = recipe.lr * recipe.gamma ** (epoch // recipe.step_size)
        generator = torch.Generator().manual_seed(recipe.epoch_seed(seed, epoch))
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), recipe.batch_size):
            batch = order[start : start + recipe.batch_size]
            grads = torch.autograd.grad(F.cross_entropy(net(x[batch]), y[batch]), params)
            with torch.no_grad():
                for i, (p, g) in enumerate(zip(params, grads, strict=True)):
                    if p.dim() > 1:  # a weight, not a bias
                        g = g.add(p, alpha=recipe.weight_decay)
                    velocity[i] = g if velocity[i] is None else velocity[i].mul_(recipe.momentum).add_(g)
                    p.add_(velocity[i], alpha=-rate)
        history.append(evaluate(net, x_test, y_test))
    return history


def transfer(data: dict, shape: Shape, init: dict, seeds: dict, recipe: Recipe, ns) -> dict:
    """Train baseA and baseB, then every treatment at every n in ``ns``. Returns {network: its test (mean
    cross-entropy, accuracy) after every epoch, in eval mode}, for baseA, baseB and f"{treatment}/n{n}"."""
    classes = {half: int(data[half][1].max()) + 1 for half in ("A", "B")}
    depth = len(shape.channels) + len(shape.hidden) + 1
    bases, out = {}, {}
    for half in ("A", "B"):
        role = f"base{half}"
        bases[half] = convnet(shape, classes[half], init[role])
        out[role] = train(bases[half], data[half], recipe, seeds[role], range(depth))
    for n in ns:
        assert 1 <= n <= depth - 1, f"n={n}: the convnet has {depth} weight layers"
        for name, (half, frozen) in TREATMENTS.items():
            role = f"{name}/n{n}"
            net = convnet(shape, classes["B"], init[role])
            for i in range(n):  # the first n layers: a copy of the trained base
                net[i].load_state_dict(bases[half][i].state_dict())
            out[role] = train(net, data["B"], recipe, seeds[role], range(n if frozen else 0, depth))
    return out
