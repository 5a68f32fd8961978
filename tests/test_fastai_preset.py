"""experiment=fastai_fine_tune: fastai's lesson (a pretrained resnet34, lr_find, then fine_tune with a slice) on
a generated image folder, with "pretrained" weights saved locally under torchvision's file name."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from harness.lr_find import find
from harness.train import train
from tests.conftest import REPO, compose_config
from tests.image_helpers import save_torchvision_weights, write_folder

SMALL = ["data.image_size=32", "batch_size=8", "strategy.epochs=1", "progress=false", "threads=1"]


@pytest.mark.slow
def test_fastai_lesson_lr_find_then_fine_tune(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    save_torchvision_weights("resnet34", tmp_path / "torch")
    root = write_folder(tmp_path / "pets")
    common = ["experiment=fastai_fine_tune", f"data.root={root}", *SMALL]

    found = find(
        compose_config([*common, "lr_find.num_it=12"], tiny=False, root=tmp_path / "out"), tmp_path / "lr"
    )
    assert found.phase == "frozen" and found.trainable == ["head"] and found.reference == "head"
    base_lr = float(f"{found.valley:.2e}")

    cfg = compose_config([*common, f"strategy.base_lr={base_lr}"], tiny=False, root=tmp_path / "out")
    result = train(cfg, tmp_path / "run")
    assert result["status"] == "ok", result["reason"]
    assert [g["name"] for g in result["groups"]] == ["body1", "body2", "head"]
    frozen, unfrozen = result["plan"]["phases"]
    assert frozen["trainable"] == ["head"] and unfrozen["trainable"] == ["body1", "body2", "head"]
    # fine_tune: base_lr halved, slice(base_lr/100, base_lr) spread geometrically over the three groups
    hi = base_lr / 2
    assert np.allclose(unfrozen["lr"], [hi / 100, hi / 10, hi])
    assert np.allclose(result["data"]["preprocessing"]["mean"], [0.485, 0.456, 0.406])
    assert result["data"]["augment"]["name"] == "flip_translate"
    assert result["config"]["model"]["weights"] == "IMAGENET1K_V1"


@pytest.mark.slow
def test_lr_find_prints_the_fine_tune_command(tmp_path):
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch"), "PYTHONPATH": str(REPO)}
    save_torchvision_weights("resnet34", tmp_path / "torch")
    root = write_folder(tmp_path / "pets")
    args = ["experiment=fastai_fine_tune", f"data.root={root}", *SMALL, "lr_find.num_it=8"]
    out = subprocess.run(
        [sys.executable, "-m", "harness.lr_find", *args, f"paths.output_root={tmp_path / 'out'}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (line,) = [x for x in out.stdout.splitlines() if x.startswith("train: ")]
    assert "python -m harness.train experiment=fastai_fine_tune" in line and " strategy.base_lr=" in line
