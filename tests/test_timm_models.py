"""timm backbones (model=timm): groups from timm's group_matcher, a new head through reset_classifier, and the
strategies and a transfer treatment on timm's tiny test models."""

from __future__ import annotations

import pytest
import torch

from harness.assemble import assemble_run
from harness.engine.loop import fit
from harness.models import build_model
from harness.train import train
from tests.conftest import compose_config

ARCHS = ("test_resnet", "test_vit", "test_convnext", "test_efficientnet")
GROUPS = {
    "test_resnet": ["stem", "layer1", "layer2", "layer3", "layer4", "head"],
    "test_vit": ["stem", "blocks.0", "blocks.1", "blocks.2", "blocks.3", "blocks.4", "blocks.5+norm", "head"],
    "test_convnext": ["stem", "stages.0", "stages.1", "stages.2", "stages.3", "head"],
    "test_efficientnet": [
        "stem",
        "blocks.0",
        "blocks.1",
        "blocks.2",
        "blocks.3",
        "blocks.4+conv_head+bn2",
        "head",
    ],
}
TINY_TIMM = [
    "data=synthetic",
    "data.channels=3",
    "data.image_size=32",
    "data.num_classes=3",
    "data.per_class=8",
    "model=timm",
    "batch_size=8",
    "progress=false",
    "threads=1",
    "diagnostics.weights=false",
]


def timm_cfg(tmp_path, *overrides):
    return compose_config([*TINY_TIMM, *overrides], tiny=False, root=tmp_path / "out")


@pytest.mark.parametrize("arch", ARCHS)
def test_groups_come_from_timms_group_matcher(arch):
    model = build_model(
        {"name": "timm", "arch": arch, "split": "coarse", "pretrained": False},
        num_classes=5,
        in_channels=3,
        image_size=32,
    )
    assert model.names == GROUPS[arch]
    # every parameter in exactly one group (checked by finish), the new head of reset_classifier last
    owned = [n for n, _ in model.net.named_parameters() if model.groups[-1].owns(n)]
    assert model.net.get_classifier().out_features == 5
    assert {f"{model.net.pretrained_cfg['classifier']}.weight"} <= set(owned)
    # forward_features uses no head parameter: the prefix cache may run it once
    assert model.body_and_head is not None


def test_fine_split_has_a_group_per_block():
    coarse, fine = (
        build_model(
            {"name": "timm", "arch": "test_convnext", "split": split, "pretrained": False},
            num_classes=2,
            in_channels=3,
            image_size=32,
        ).names
        for split in ("coarse", "fine")
    )
    assert len(fine) > len(coarse) and fine[0] == "stem" and fine[-1] == "head"


def test_grey_input_gets_timms_own_first_conv():
    model = build_model(
        {"name": "timm", "arch": "test_resnet", "split": "coarse", "pretrained": False},
        num_classes=2,
        in_channels=1,
        image_size=16,
    )
    assert model.net(torch.zeros(2, 1, 16, 16)).shape == (2, 2)


def _snapshot(net):
    return {n: p.detach().clone() for n, p in net.named_parameters()}


@pytest.mark.parametrize("arch", ["test_resnet", "test_vit", "test_convnext"])
@pytest.mark.parametrize(
    "strategy",
    [
        ["strategy=freeze_to", "strategy.k=2", "epochs=1"],
        ["strategy=gradual", "strategy.every=1", "epochs=3"],
        ["strategy=full_unfreeze", "strategy.freeze_epochs=1", "strategy.epochs=1"],
    ],
    ids=["freeze_to", "gradual", "full_unfreeze"],
)
def test_strategies_train_exactly_the_planned_groups(tmp_path, arch, strategy):
    run = assemble_run(timm_cfg(tmp_path, f"model.arch={arch}", "strategy.bn=frozen", *strategy))
    before = _snapshot(run.model.net)
    trained_somewhere = set()
    for phase in run.plan.phases:
        trained_somewhere |= set(phase.trainable)
    fit(run)
    after = _snapshot(run.model.net)
    for group in run.model.groups:
        moved = any(not torch.equal(before[n], after[n]) for n in before if group.owns(n))
        # bn=frozen: nothing of a group that no phase trains may move, not even its norm layers
        assert moved == (group.name in trained_somewhere), (group.name, run.plan.phases)
    assert len(run.history) == run.plan.total_epochs


def test_head_only_caches_forward_features_exactly(tmp_path):
    common = ["model.arch=test_resnet", "strategy=head_only", "strategy.bn=eval", "epochs=2"]
    cached = assemble_run(timm_cfg(tmp_path / "a", *common))
    fit(cached)
    plain = assemble_run(timm_cfg(tmp_path / "b", *common, "prefix_cache=false"))
    fit(plain)
    assert [h["cached_groups"] for h in cached.history] == [5, 5]
    assert [h["cached_groups"] for h in plain.history] == [0, 0]
    for a, b in zip(cached.history, plain.history, strict=True):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
    assert torch.allclose(cached.model.net.fc.weight, plain.model.net.fc.weight, atol=1e-5)


def test_vit_final_norm_sits_in_forward_features_so_no_cache_under_a_trained_norm(tmp_path):
    # head_only with bn=train: the frozen groups' LayerNorms train, so their output is not static
    run = assemble_run(timm_cfg(tmp_path, "model.arch=test_vit", "strategy=head_only", "epochs=1"))
    fit(run)
    assert run.history[0]["cached_groups"] == 0


@pytest.mark.slow
def test_transfer_treatment_on_a_timm_model(tmp_path):
    cfg = timm_cfg(
        tmp_path,
        "model.arch=test_resnet",
        "transfer=yosinski",
        "split=random_half",
        "data.num_classes=4",
        "transfer.treatment=AnB",
        "transfer.n=2",
        "transfer.base_epochs=1",
        "transfer.epochs=1",
    )
    result = train(cfg, tmp_path / "run")
    assert result["status"] == "ok", result["reason"]
    section = result["transfer"]
    assert section["treatment"] == "AnB" and section["n"] == 2
    # AnB: the first two groups copied from baseA and frozen, the rest trained
    assert result["plan"]["phases"][0]["trainable"] == ["layer2", "layer3", "layer4", "head"]
