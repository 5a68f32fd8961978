"""Model builders, composed from the real conf/model/*.yaml files on tiny inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from omegaconf import OmegaConf
from torch import nn

from harness.errors import ConfigError
from harness.models import build_model, head_layer, load_weights, reinitialize
from harness.models.groups import group_parameters

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"
MODELS = ["convnet", "resnet18", "resnet34", "resnet50", "custom"]
INPUTS = [(1, 8), (1, 12), (1, 28), (3, 32)]  # (channels, image side): digits, synthetic, MNIST, CIFAR


def model_cfg(name: str, *overrides: str, in_channels: int = 1):
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    if name == "custom" and in_channels != 1:
        # The example net is written for 1-channel input; RGB users set the first conv (as its yaml says).
        cfg.net._args_[0].in_channels = in_channels
    return OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))


def build(
    name: str, *overrides: str, num_classes: int = 10, in_channels: int = 1, image_size: int = 28, seed=0
):
    torch.manual_seed(seed)
    cfg = model_cfg(name, *overrides, in_channels=in_channels)
    return build_model(cfg, num_classes=num_classes, in_channels=in_channels, image_size=image_size)


def head_keys(model) -> set[str]:
    qualified = next(n for n, m in model.net.named_modules() if m is head_layer(model))
    return {f"{qualified}.weight", f"{qualified}.bias"}


# --------------------------------------------------------------------------------------------- the configs


@pytest.mark.parametrize("name", MODELS)
def test_yaml_name_equals_file_name(name):
    assert OmegaConf.load(CONF / f"{name}.yaml").name == name


# The deep resnets differ from resnet18 only in depth (building them is the slow part): two shapes each.
SHAPE_CASES = [(name, c, s) for name in ["convnet", "resnet18", "custom"] for c, s in INPUTS] + [
    (name, c, s) for name in ["resnet34", "resnet50"] for c, s in [(1, 8), (3, 32)]
]


@pytest.mark.parametrize("name,channels,size", SHAPE_CASES)
def test_builds_and_runs_on_every_input_shape(name, channels, size):
    model = build(name, num_classes=7, in_channels=channels, image_size=size)
    out = model.net(torch.randn(3, channels, size, size))
    assert out.shape == (3, 7)
    assert head_layer(model).out_features == 7


@pytest.mark.parametrize(
    "name,split,expected",
    [
        ("convnet", None, ["conv1", "conv2", "conv3", "fc1", "head"]),
        ("resnet18", "groups6", ["stem", "layer1", "layer2", "layer3", "layer4", "head"]),
        ("resnet50", "groups6", ["stem", "layer1", "layer2", "layer3", "layer4", "head"]),
        ("resnet34", "fastai3", ["body1", "body2", "head"]),
        ("custom", None, ["block1", "block2", "head"]),
    ],
)
def test_groups_are_ordered_named_and_cover_every_parameter_once(name, split, expected):
    model = build(name, *([f"split={split}"] if split else []))
    assert model.names == expected
    params = group_parameters(model)
    flat = [id(p) for group in params for p in group]
    assert len(flat) == len(set(flat)) == len(list(model.net.parameters()))
    assert all(group for group in params), "every group owns at least one parameter"
    # The head is the last Linear and lives in the last group.
    assert any(p is head_layer(model).weight for p in params[-1])


@pytest.mark.parametrize(
    "overrides,expected",
    [
        ([], ["conv1", "conv2", "conv3", "fc1", "head"]),
        (
            ["channels=[8,8,8,8]", "hidden=[16,16]", "batchnorm=true", "dropout=0.5"],
            ["conv1", "conv2", "conv3", "conv4", "fc1", "fc2", "head"],
        ),
        (["channels=[8]", "hidden=[]"], ["conv1", "head"]),
        (["channels=[]", "hidden=[16]"], ["fc1", "head"]),
    ],
)
def test_convnet_has_one_weight_layer_per_group(overrides, expected):
    model = build("convnet", *overrides, image_size=8)
    assert model.names == expected
    assert [child for child in model.net._modules] == expected  # children ARE the groups
    assert model.sequential
    for group, child in zip(model.groups, model.net.children(), strict=True):
        weight_layers = [m for m in child.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
        assert len(weight_layers) == 1, group.name
        if group.name.startswith("conv"):
            assert isinstance(weight_layers[0], nn.Conv2d)
        else:
            assert isinstance(weight_layers[0], nn.Linear)
    assert model.net(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_convnet_skips_pools_that_would_shrink_below_one_pixel():
    model = build("convnet", "channels=[4,4,4,4,4]", image_size=8)
    pools = [m for m in model.net.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 3  # 8 -> 4 -> 2 -> 1, then no more
    assert head_layer(model).in_features == 128
    assert model.net[:5](torch.randn(2, 1, 8, 8)).shape == (2, 4, 1, 1)


def test_convnet_pool_list_and_flatten_size():
    model = build("convnet", "channels=[4,6]", "pool=[false,true]", "hidden=[5]", image_size=12)
    fc1 = model.net.fc1
    assert isinstance(fc1[0], nn.Flatten)
    assert fc1[1].in_features == 6 * 6 * 6  # 12x12 pooled once
    with pytest.raises(ConfigError, match=r"model\.pool"):
        build("convnet", "channels=[4,6]", "pool=[true]")


@pytest.mark.parametrize("name", ["convnet", "resnet18", "custom"])
def test_sequential_prefix_then_suffix_equals_whole_net(name):
    model = build(name, image_size=12)
    assert model.sequential
    net = model.net.eval()  # eval: BatchNorm uses running stats, so both passes see the same function
    x = torch.randn(2, 1, 12, 12)
    with torch.no_grad():
        whole = net(x)
        for k in range(1, len(net)):
            assert torch.allclose(net[k:](net[:k](x)), whole, atol=1e-6), k


def test_fastai3_split_boundaries():
    model = build("resnet18", "split=fastai3")
    assert [g.prefixes for g in model.groups] == [
        ("stem", "layer1", "layer2"),
        ("layer3", "layer4"),
        ("head",),
    ]
    lookup = dict(model.net.named_parameters())
    by_group = [
        {n for n, p in lookup.items() if any(p is q for q in group)} for group in group_parameters(model)
    ]
    assert "stem.conv1.weight" in by_group[0] and "layer2.1.bn2.bias" in by_group[0]
    assert "layer3.0.conv1.weight" in by_group[1] and "layer4.1.conv2.weight" in by_group[1]
    assert by_group[2] == {"head.fc.weight", "head.fc.bias"}
    assert model.sequential  # still runs of consecutive children


def test_user_split_overrides_resnet_groups():
    model = build(
        "resnet18",
        "groups=[{name: body, modules: [stem, layer1, layer2, layer3, layer4]}, "
        "{name: top, modules: [head]}]",
    )
    assert model.names == ["body", "top"]
    assert model.sequential
    # A split that is not consecutive children is valid but not sequential.
    model = build(
        "resnet18",
        "groups=[{name: a, modules: [layer1, stem, layer2, layer3, layer4]}, {name: h, modules: [head.fc]}]",
    )
    assert not model.sequential


@pytest.mark.parametrize("name", ["convnet", "resnet18", "custom"])
def test_changing_num_classes_replaces_the_head_only(name):
    ten = build(name, num_classes=10).net.state_dict()
    model3 = build(name, num_classes=3)
    three = model3.net.state_dict()
    heads = head_keys(model3)
    assert ten.keys() == three.keys()
    for key in ten:
        if key in heads:
            assert ten[key].shape[0] == 10 and three[key].shape[0] == 3
        else:
            assert ten[key].shape == three[key].shape, key


def test_resnet_in_channels_replace_conv1_only():
    rgb = build("resnet18", in_channels=3).net.state_dict()
    gray = build("resnet18", in_channels=1).net.state_dict()
    for key in rgb:
        if key == "stem.conv1.weight":
            assert rgb[key].shape == (64, 3, 7, 7) and gray[key].shape == (64, 1, 7, 7)
        else:
            assert rgb[key].shape == gray[key].shape, key


# --------------------------------------------------------------------------------------------- weights


@pytest.mark.parametrize("name", ["convnet", "resnet18", "custom"])
def test_load_weights_round_trip(name, tmp_path):
    source = build(name, seed=1)
    path = tmp_path / "w.pt"
    torch.save(source.net.state_dict(), path)
    target = build(name, seed=2)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert not torch.allclose(source.net.eval()(x), target.net.eval()(x))
        load_weights(target, str(path))
        assert torch.allclose(source.net(x), target.net(x))


def test_load_weights_with_another_class_count_needs_skip_head(tmp_path):
    source = build("convnet", num_classes=10, seed=1)
    path = tmp_path / "ten.pt"
    torch.save(source.net.state_dict(), path)
    target = build("convnet", num_classes=3, seed=2)
    fresh_head = head_layer(target).weight.detach().clone()

    with pytest.raises(
        ConfigError, match=r"'head\.weight' has shape \(10, 128\) in the file, \(3, 128\)"
    ) as err:
        load_weights(target, str(path))
    assert str(path) in str(err.value)

    load_weights(target, str(path), skip_head=True)
    src, tgt = source.net.state_dict(), target.net.state_dict()
    for key in tgt:
        if not key.startswith("head."):
            assert torch.equal(src[key], tgt[key]), key
    assert torch.equal(head_layer(target).weight, fresh_head)  # the head keeps its own init


def test_load_weights_strict_shapes_false_skips_mismatched_entries(tmp_path):
    source = build("convnet", "channels=[8,8]", "hidden=[16]", seed=1)
    state = source.net.state_dict()
    state["fc1.1.weight"] = torch.zeros(16, 99)
    path = tmp_path / "w.pt"
    torch.save(state, path)
    target = build("convnet", "channels=[8,8]", "hidden=[16]", seed=2)
    before = target.net.fc1[1].weight.detach().clone()
    load_weights(target, str(path), strict_shapes=False)
    assert torch.equal(target.net.fc1[1].weight, before)
    assert torch.equal(target.net.conv1[0].weight, source.net.conv1[0].weight)


def test_resnet_loads_torchvision_weights_before_rewrapping(tmp_path):
    torch.manual_seed(5)
    tv = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    path = tmp_path / "resnet18.pt"
    torch.save(tv.state_dict(), path)

    same = build("resnet18", f"weights={path}", num_classes=10, in_channels=3, image_size=32).net.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(same(x), tv(x), atol=1e-5)

    # Another class count: everything but fc is loaded, fc stays fresh with the new shape.
    other = build("resnet18", f"weights={path}", num_classes=4, in_channels=3).net
    assert torch.equal(other.layer4[1].conv2.weight, tv.layer4[1].conv2.weight)
    assert other.head.fc.weight.shape == (4, 512)

    # One input channel: conv1 is the RGB kernel summed over channels (fastai's rule).
    gray = build("resnet18", f"weights={path}", in_channels=1).net
    assert torch.allclose(gray.stem.conv1.weight, tv.conv1.weight.sum(dim=1, keepdim=True))
    assert torch.equal(gray.stem.bn1.weight, tv.bn1.weight)


def test_reinitialize_resets_weights_and_norm_statistics():
    model = build("convnet", "batchnorm=true", "channels=[4]", "hidden=[8]", image_size=8)
    conv, bn = model.net.conv1[0], model.net.conv1[1]
    with torch.no_grad():
        for p in model.net.parameters():
            p.fill_(0.5)
        bn.running_mean.fill_(3.0)
        bn.running_var.fill_(7.0)
    reinitialize([model.net.conv1])
    assert not torch.all(conv.weight == 0.5)
    assert torch.equal(bn.weight, torch.ones(4)) and torch.equal(bn.bias, torch.zeros(4))
    assert torch.equal(bn.running_mean, torch.zeros(4)) and torch.equal(bn.running_var, torch.ones(4))
    assert torch.all(model.net.fc1[1].weight == 0.5)  # modules not passed are untouched


# --------------------------------------------------------------------------------------------- bad input


def test_unknown_model_name_lists_allowed_names():
    with pytest.raises(ConfigError, match=r"model\.name='vgg'.*convnet.*resnet18") as err:
        build_model({"name": "vgg"}, num_classes=2, in_channels=1, image_size=8)
    assert "\n" not in str(err.value)


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"model\.chanels is not a key of model 'convnet'"):
        build("convnet", "chanels=[1]")


def test_resnet_split_must_be_known():
    with pytest.raises(ConfigError, match=r"model\.split='fastai4'.*groups6, fastai3"):
        build("resnet18", "split=fastai4")


def test_custom_split_naming_a_missing_module():
    with pytest.raises(ConfigError, match=r"model\.groups\[1\] \('block2'\) names module 'fc'") as err:
        build("custom", "groups=[{name: block1, modules: ['0','1']}, {name: block2, modules: [fc]}]")
    assert "its top-level modules: 0, 1, 2" in str(err.value)


def test_parameter_left_out_of_every_group():
    with pytest.raises(ConfigError, match=r"model\.groups: parameter '1\.weight' belongs to no layer group"):
        build(
            "custom",
            "groups=[{name: block1, modules: ['0']}, {name: block2, modules: ['4', '5']}, "
            "{name: head, modules: ['9']}]",
        )
    with pytest.raises(ConfigError, match=r"model\.groups: parameter 'fc1\.1\.weight'"):
        build(
            "convnet", "groups=[{name: body, modules: [conv1, conv2, conv3]}, {name: head, modules: [head]}]"
        )


def test_custom_head_must_be_a_linear_in_the_last_group():
    with pytest.raises(ConfigError, match=r"model\.head '7' is a AdaptiveAvgPool2d"):
        build("custom", "head='7'")
    with pytest.raises(ConfigError, match=r"model\.head 'fc' is not a module of model\.net"):
        build("custom", "head=fc")


def test_custom_net_that_cannot_take_the_input_fails_at_build():
    with pytest.raises(ConfigError, match=r"model\.net does not accept 3x28x28 input"):
        build_model(model_cfg("custom"), num_classes=10, in_channels=3, image_size=28)
    with pytest.raises(ConfigError, match=r"model\.net could not be instantiated"):
        build("custom", "net._target_=torch.nn.NoSuchThing")


def test_weights_file_that_does_not_exist(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(ConfigError, match=r"weights file '.*nope\.pt' does not exist"):
        load_weights(build("convnet"), str(missing))
    with pytest.raises(ConfigError, match=r"model\.weights: file '.*nope\.pt' does not exist"):
        build("resnet18", f"weights={missing}")


def test_weights_file_of_another_architecture_names_the_key(tmp_path):
    path = tmp_path / "small.pt"
    torch.save(build("convnet", "channels=[16,64,64]").net.state_dict(), path)
    with pytest.raises(
        ConfigError, match=r"'conv1\.0\.weight' has shape \(16, 1, 3, 3\) in the file, \(32, 1, 3, 3\)"
    ):
        load_weights(build("convnet"), str(path))

    path = tmp_path / "fewer.pt"
    torch.save(build("convnet", "hidden=[]").net.state_dict(), path)
    with pytest.raises(ConfigError, match=r"key 'fc1\.1\.weight' is missing from the file"):
        load_weights(build("convnet"), str(path))

    path = tmp_path / "tv34.pt"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)
    with pytest.raises(
        ConfigError, match=r"model\.weights: file '.*tv34\.pt'.*key 'layer1\.2\.conv1\.weight' in the file"
    ):
        build("resnet18", f"weights={path}")


def test_truncated_or_corrupt_weights_file(tmp_path):
    model = build("convnet")
    good = tmp_path / "good.pt"
    torch.save(model.net.state_dict(), good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file at all")
    for path in (truncated, garbage):
        with pytest.raises(ConfigError, match=rf"weights file '.*{path.name}' could not be read") as err:
            load_weights(model, str(path))
        assert "\n" not in str(err.value)

    not_state = tmp_path / "list.pt"
    torch.save([1, 2, 3], not_state)
    with pytest.raises(ConfigError, match=r"is not a state_dict"):
        load_weights(model, str(not_state))
