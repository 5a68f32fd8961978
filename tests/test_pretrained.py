"""Pretrained weights by name from the local caches (nothing downloaded) and the preprocessing they bring.

The registry has no real weights: each test saves the architecture with random weights under the real file
name, in a temporary TORCH_HOME or Hugging Face cache, so the real lookup and loading paths run."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from harness.assemble import assemble_run
from harness.data import load_data
from harness.errors import ConfigError
from harness.models.pretrained import preprocessing_of
from harness.train import train
from tests.conftest import compose_config
from tests.image_helpers import save_timm_weights, save_torchvision_weights, write_folder

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
BASE = ["progress=false", "threads=1", "batch_size=8", "epochs=1", "diagnostics.weights=false"]


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    return tmp_path / "hf" / "hub"


def folder_cfg(tmp_path, *overrides):
    root = write_folder(tmp_path / "images")
    return compose_config(
        [*BASE, "data=imagefolder", f"data.root={root}", *overrides], tiny=False, root=tmp_path / "out"
    )


def test_resnet18_imagenet_weights_from_the_hub_cache(tmp_path, torch_home):
    saved = save_torchvision_weights("resnet18", torch_home)
    assert saved.name == "resnet18-f37072fd.pth" and saved.parent == torch_home / "hub" / "checkpoints"
    run = assemble_run(
        folder_cfg(tmp_path, "model=resnet18", "model.weights=IMAGENET1K_V1", "data.image_size=32")
    )
    state = torch.load(saved, weights_only=True)
    assert torch.equal(run.model.net.stem.conv1.weight, state["conv1.weight"])
    assert torch.equal(run.model.net.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])
    assert run.model.net.head.fc.out_features == 3  # the 1000-class fc skipped, a new head
    pre = run.data.preprocessing
    assert pre["normalize"] == "weights" and pre["source"] == "torchvision ResNet18_Weights.IMAGENET1K_V1"
    assert np.allclose(pre["mean"], IMAGENET_MEAN) and np.allclose(pre["std"], IMAGENET_STD)
    # the weights' resize-then-crop ratio (256 -> 224) at the size asked for
    assert pre["image_size"] == 32 and pre["resize"] == round(32 * 256 / 224)
    # DEFAULT is the same file; a path to it brings the same preprocessing
    assert preprocessing_of({"name": "resnet18", "weights": "DEFAULT"}) == preprocessing_of(
        {"name": "resnet18", "weights": str(saved)}
    )


def test_image_size_auto_is_the_weights_input_size(tmp_path, torch_home):
    save_torchvision_weights("resnet18", torch_home)
    cfg = folder_cfg(tmp_path, "model=resnet18", "model.weights=IMAGENET1K_V1")
    data = load_data(cfg.data, preprocessing=preprocessing_of(cfg.model))
    assert data.image_size == 224 and data.preprocessing["resize"] == 256
    assert tuple(data.train.x.shape[1:]) == (3, 224, 224)
    plain = load_data(folder_cfg(tmp_path / "plain", "model=resnet18").data)  # random weights: 32, own stats
    assert plain.image_size == 32 and plain.preprocessing["normalize"] == "train"


def test_normalize_overrides_the_weights(tmp_path, torch_home):
    save_torchvision_weights("resnet18", torch_home)
    common = ["model=resnet18", "model.weights=IMAGENET1K_V1", "data.image_size=16"]
    train_stats = assemble_run(folder_cfg(tmp_path / "a", *common, "data.normalize=train")).data
    raw = assemble_run(folder_cfg(tmp_path / "b", *common, "data.normalize=none")).data
    assert train_stats.preprocessing["source"] == "train" and not np.allclose(train_stats.mean, IMAGENET_MEAN)
    assert raw.mean == (0.0, 0.0, 0.0) and raw.std == (1.0, 1.0, 1.0)
    assert 0 <= float(raw.train.x.min()) and float(raw.train.x.max()) <= 1  # pixel values in [0, 1]
    # the train part normalised by its own statistics: mean ~0, std ~1 per channel
    x = train_stats.train.x
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=0.1)


def test_absent_weights_file_names_the_file_and_its_folder(tmp_path, torch_home):
    cfg = folder_cfg(tmp_path, "model=resnet34", "model.weights=IMAGENET1K_V1", "data.image_size=16")
    with pytest.raises(ConfigError) as caught:
        assemble_run(cfg)
    message = str(caught.value)
    folder = torch_home / "hub" / "checkpoints"
    assert f"resnet34-b627a593.pth is not in {folder}" in message and "model.download=true" in message
    assert "\n" not in message


def test_timm_pretrained_from_the_hugging_face_cache(tmp_path, hf_cache):
    saved = save_timm_weights("test_resnet", hf_cache)
    cfg = folder_cfg(
        tmp_path, "model=timm", "model.arch=test_resnet", "model.pretrained=true", "data.image_size=32"
    )
    run = assemble_run(cfg)
    from safetensors.torch import load_file

    state = load_file(saved)
    net = run.model.net
    assert torch.equal(net.layer2[0].conv1.weight, state["layer2.0.conv1.weight"])
    assert net.fc.out_features == 3 and not torch.equal(net.fc.weight[:3], state["fc.weight"][:3])
    pre = run.data.preprocessing
    assert pre["source"] == "timm test_resnet.r160_in1k" and pre["mean"] == [0.5, 0.5, 0.5]
    assert pre["resize"] == round(32 * int(160 / 0.95) / 160)
    # model.image_size=auto: the pretrained_cfg's input size
    assert preprocessing_of(cfg.model).image_size == 160


def test_timm_weights_from_a_local_file(tmp_path):
    path = tmp_path / "vit.pth"
    torch.manual_seed(1)
    torch.save(timm.create_model("test_vit").state_dict(), path)
    cfg = folder_cfg(
        tmp_path, "model=timm", "model.arch=test_vit", f"model.weights={path}", "data.image_size=32"
    )
    net = assemble_run(cfg).model.net
    saved = torch.load(path, weights_only=True)
    assert torch.equal(net.blocks[2].mlp.fc1.weight, saved["blocks.2.mlp.fc1.weight"])
    # the position embeddings resampled by timm's own filter to the 32 px input (160 px in the file)
    assert net.pos_embed.shape[1] < saved["pos_embed"].shape[1]


def test_timm_pretrained_missing_names_the_file_and_folder(tmp_path, hf_cache):
    cfg = folder_cfg(
        tmp_path, "model=timm", "model.arch=test_vit", "model.pretrained=true", "data.image_size=32"
    )
    with pytest.raises(ConfigError) as caught:
        assemble_run(cfg)
    message = str(caught.value)
    assert "model.safetensors of timm/test_vit.r160_in1k is not in" in message
    assert str(hf_cache / "models--timm--test_vit.r160_in1k") in message and "\n" not in message


@pytest.mark.slow
def test_acceptance_resnet18_imagenet_full_unfreeze_with_augmentation(tmp_path, torch_home):
    """The issue's acceptance run: resnet18 IMAGENET1K_V1 from the hub cache, full_unfreeze, augmented."""
    save_torchvision_weights("resnet18", torch_home)
    cfg = folder_cfg(
        tmp_path,
        "model=resnet18",
        "model.weights=IMAGENET1K_V1",
        "data.image_size=32",
        "data.augment=flip_translate",
        "strategy=full_unfreeze",
        "strategy.freeze_epochs=1",
        "strategy.epochs=1",
    )
    result = train(cfg, tmp_path / "run")
    assert result["status"] == "ok", result["reason"]
    data = result["data"]
    assert data["preprocessing"]["normalize"] == "weights"
    assert np.allclose(data["preprocessing"]["mean"], IMAGENET_MEAN)
    assert np.allclose(data["preprocessing"]["std"], IMAGENET_STD)
    assert data["augment"] == {
        "name": "flip_translate",
        "where": "device, per batch",
        "flip": 0.5,
        "translate_px": 2,
        "padding": "reflect",
    }
    assert [h["phase"] for h in result["history"]] == ["frozen", "unfrozen"]
    assert all(h["cached_groups"] == 0 for h in result["history"])  # augmented: the prefix cache is off
    assert any("prefix cache off: data.augment=flip_translate" in n for n in result["plan"]["notes"])
