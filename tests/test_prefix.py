"""Frozen-prefix caching changes the cost, never the numbers."""

import pytest
import torch

from harness.engine.prefix import cacheable_groups
from harness.train import train
from tests.test_freezing import setup


@pytest.mark.parametrize(
    "overrides",
    [
        ["strategy=head_only"],
        ["strategy=freeze_to", "strategy.k=2"],
        ["strategy=gradual", "strategy.every=1", "epochs=1"],
        ["strategy=full_unfreeze", "strategy.epochs=1", "model.batchnorm=true", "strategy.bn=eval"],
    ],
)
def test_cached_and_uncached_runs_give_the_same_numbers(make_cfg, tmp_path, overrides):
    # The same identity twice: resume=false makes the second train instead of reusing the first's result.
    cached = train(make_cfg(overrides + ["prefix_cache=true", "resume=false"]), tmp_path / "cached")
    plain = train(make_cfg(overrides + ["prefix_cache=false", "resume=false"]), tmp_path / "plain")
    assert any(h["cached_groups"] > 0 for h in cached["history"])  # the fast path really ran
    assert all(h["cached_groups"] == 0 for h in plain["history"])
    for a, b in zip(cached["history"], plain["history"], strict=True):
        for key in ("train_loss", "val_loss", "val_acc", "test_loss", "test_acc"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key
    assert cached["metrics"]["test_acc"] == plain["metrics"]["test_acc"]


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["strategy=head_only"], 3),  # conv1 conv2 fc1 frozen and static
        (["strategy=never"], 0),  # nothing frozen
        (["strategy=head_only", "model.dropout=0.5"], 2),  # fc1 has dropout: only the convs are static
        (["strategy=head_only", "model.batchnorm=true"], 0),  # bn=train: running stats move
        (["strategy=head_only", "model.batchnorm=true", "strategy.bn=frozen"], 0),  # stats still move
        (["strategy=head_only", "model.batchnorm=true", "strategy.bn=eval"], 3),
        (["strategy=surgical", "strategy.groups=[conv1]"], 0),  # the first group trains
    ],
)
def test_only_static_frozen_prefixes_are_cached(make_cfg, overrides, expected):
    run = setup(make_cfg(overrides))
    assert cacheable_groups(run.model, run.plan.phases[0], run.plan.bn, run.data) == expected


def test_cached_features_equal_the_prefix_output(make_cfg):
    from harness.engine.prefix import phase_view

    run = setup(make_cfg(["strategy=head_only"]))
    view = phase_view(run.model, run.plan.phases[0], run.plan.bn, run.data, "cpu")
    run.model.net.eval()
    with torch.no_grad():
        direct = run.model.net[:3](run.data.val.x)
    assert torch.allclose(view.part("val").x, direct, atol=1e-6)
    assert torch.equal(view.part("val").y, run.data.val.y)
    assert view.part("val") is view.part("val")  # computed once per phase


@pytest.mark.parametrize(
    "test_every_epoch, parts", [(True, ["train", "val", "test"]), (False, ["train", "val"])]
)
def test_the_prefix_runs_only_on_the_parts_a_phase_uses(make_cfg, monkeypatch, test_every_epoch, parts):
    # fastai's head phase: one cached epoch that never evaluates the test set unless every epoch does
    import harness.engine.prefix as prefix
    from harness.engine.loop import fit

    run = setup(
        make_cfg(["strategy=full_unfreeze", "strategy.epochs=1", f"test_every_epoch={test_every_epoch}"])
    )
    sizes = {len(getattr(run.data, name)): name for name in ("train", "val", "test")}
    assert len(sizes) == 3  # the parts are told apart by their sizes
    seen, features = [], prefix._features
    monkeypatch.setattr(
        prefix,
        "_features",
        lambda net, part, device: seen.append(sizes[len(part)]) or features(net, part, device),
    )
    fit(run)
    assert seen == parts and run.history[0]["cached_groups"] == 3 and run.history[1]["cached_groups"] == 0
    assert (run.history[0]["test_acc"] is None) != test_every_epoch and run.history[1]["test_acc"] is not None


def test_norm_layers_that_train_under_bn_train_are_not_static():
    from torch import nn

    from harness.engine.prefix import _is_static

    layer_norm = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))  # no running statistics, but affine params
    assert not _is_static(layer_norm, "train")  # fastai's train_bn: its affine params train in a frozen group
    assert _is_static(layer_norm, "frozen") and _is_static(layer_norm, "eval")
    assert _is_static(nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4, elementwise_affine=False)), "train")


def test_bf16_and_channels_last_run_and_stay_close_to_fp32(make_cfg, tmp_path):
    fp32 = train(make_cfg(["strategy=freeze_to", "strategy.k=1"]), tmp_path / "fp32")
    fast = train(
        make_cfg(["strategy=freeze_to", "strategy.k=1", "speed.precision=bf16", "speed.channels_last=true"]),
        tmp_path / "fast",
    )
    # precision is part of a run's identity
    assert fast["status"] == "ok" and fast["run_id"] != fp32["run_id"]
    for a, b in zip(fast["history"], fp32["history"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=0.05)
