"""Models: every builder returns a network with its ordered layer groups (input side first, head last).

- :mod:`~harness.models.build`: :func:`build_model`, the one entry point (``model`` config -> model);
- :mod:`~harness.models.groups`: layer groups, the split checks and the head;
- :mod:`~harness.models.convnet`, :mod:`~harness.models.resnet`, :mod:`~harness.models.timm_models`,
  :mod:`~harness.models.custom`: the builders;
- :mod:`~harness.models.weights`: state_dict files matched key by key;
- :mod:`~harness.models.pretrained`: weights by name from the local caches, and their preprocessing.
"""

from harness.models.build import BUILDERS, build_model, reinitialize
from harness.models.groups import GroupedModel, LayerGroup, head_layer
from harness.models.resnet import RESNET_SPLITS
from harness.models.weights import load_weights

__all__ = [
    "BUILDERS",
    "RESNET_SPLITS",
    "GroupedModel",
    "LayerGroup",
    "build_model",
    "head_layer",
    "load_weights",
    "reinitialize",
]
