"""Linear CKA: its invariances, a direct reference computation, per-group representations, and the hook."""

import numpy as np
import pytest
import torch

from harness.data import load_data
from harness.diagnostics.cka import cka_from_grams, gram, group_outputs, linear_cka
from harness.models import build_model
from harness.train import train


def reference_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al. (2019), eq. 3 and 4, written out: HSIC(K, L) = tr(K H L H) / (n - 1)^2."""
    n = x.shape[0]
    k, lm = x @ x.T, y @ y.T
    h = np.eye(n) - np.ones((n, n)) / n

    def hsic(a, b):
        return np.trace(a @ h @ b @ h) / (n - 1) ** 2

    return hsic(k, lm) / np.sqrt(hsic(k, k) * hsic(lm, lm))


def random_pair(n=40, d1=7, d2=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d1, generator=g, dtype=torch.float64)
    # y shares structure with x, so CKA is neither ~0 nor ~1
    y = torch.cat(
        [
            x @ torch.randn(d1, d2 // 2, generator=g, dtype=torch.float64),
            torch.randn(n, d2 - d2 // 2, generator=g, dtype=torch.float64),
        ],
        1,
    ).tanh()
    return x, y


def orthogonal(d, seed=1):
    q, _ = torch.linalg.qr(
        torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    )
    return q


# (n, d1, d2): the feature-space formula (small d), the example-space one (d > n), and one of each
SHAPES = [(50, 5, 8), (20, 200, 300), (30, 4, 500)]


@pytest.mark.parametrize("n, d1, d2", SHAPES)
def test_matches_a_direct_reference_computation(n, d1, d2):
    x, y = random_pair(n, d1, d2)
    expected = reference_cka(x.numpy(), y.numpy())
    assert 0.05 < expected < 0.98  # neither trivially 0 nor 1
    assert linear_cka(x, y) == pytest.approx(expected, rel=1e-10)
    assert cka_from_grams(gram(x), gram(y)) == pytest.approx(expected, rel=1e-10)
    assert linear_cka(y, x) == pytest.approx(expected, rel=1e-10)  # symmetric


@pytest.mark.parametrize("n, d1, d2", SHAPES)
def test_a_representation_with_itself_is_one(n, d1, d2):
    x, y = random_pair(n, d1, d2)
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(y, y) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x.float(), x.float()) == pytest.approx(
        1.0, abs=1e-12
    )  # float32 input: computed in float64


@pytest.mark.parametrize("n, d1, d2", SHAPES)
def test_invariant_to_orthogonal_transforms_and_isotropic_scaling(n, d1, d2):
    x, y = random_pair(n, d1, d2)
    value = linear_cka(x, y)
    assert linear_cka(x @ orthogonal(d1), y) == pytest.approx(value, rel=1e-10)
    assert linear_cka(x, y @ orthogonal(d2, seed=2)) == pytest.approx(value, rel=1e-10)
    assert linear_cka(3.7 * x, 0.01 * y) == pytest.approx(value, rel=1e-10)
    assert linear_cka(x, x @ orthogonal(d1) * 5.0) == pytest.approx(1.0, abs=1e-12)
    # ...and shifting every example by the same vector changes nothing (CKA centres the features)
    assert linear_cka(x + 10.0, y) == pytest.approx(value, rel=1e-8)


def test_not_invariant_to_any_invertible_linear_map():
    # The property that separates linear CKA from CCA: an anisotropic scaling changes it.
    x, y = random_pair(50, 5, 8)
    stretch = torch.diag(torch.tensor([100.0, 1, 1, 1, 1], dtype=torch.float64))
    assert abs(linear_cka(x @ stretch, y) - linear_cka(x, y)) > 1e-3


def test_constant_representation_is_nan_and_row_mismatch_is_an_error():
    x, _ = random_pair()
    assert np.isnan(linear_cka(torch.ones(40, 3), x))
    with pytest.raises(ValueError, match="same examples"):
        linear_cka(x, x[:-1])


def convnet(make_cfg, overrides=()):
    cfg = make_cfg(["model.batchnorm=true", "model.dropout=0.5", *overrides])
    data = load_data(cfg.data, cfg.split)
    torch.manual_seed(0)
    model = build_model(
        cfg.model, num_classes=data.num_classes, in_channels=data.in_channels, image_size=data.image_size
    )
    return model, data.val.x[:16]


def test_group_outputs_sequential_and_hooked_agree_and_end_in_the_logits(make_cfg):
    model, x = convnet(make_cfg)
    assert model.sequential
    direct = group_outputs(model, x)
    model.sequential = False  # the forward-hook path, used for nets that are not a Sequential of groups
    hooked = group_outputs(model, x)
    assert [o.shape for o in direct] == [o.shape for o in hooked] and len(direct) == len(model.groups)
    for a, b in zip(direct, hooked, strict=True):
        assert torch.equal(a, b)
    model.net.eval()
    assert torch.equal(direct[-1], model.net(x))


def test_group_outputs_leave_modes_and_running_stats_alone(make_cfg):
    model, x = convnet(make_cfg)
    model.net.train()
    model.net.conv1[1].eval()  # as bn=eval leaves a frozen group's norm layer
    stats = {k: v.clone() for k, v in model.net.state_dict().items()}
    rng = torch.get_rng_state()
    group_outputs(model, x)
    assert model.net.training and model.net.conv2.training and not model.net.conv1[1].training
    assert all(torch.equal(stats[k], v) for k, v in model.net.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())  # dropout off: no random draw


def test_cka_hook_in_a_run_from_a_checkpoint(make_cfg, tmp_path):
    base = train(make_cfg(["split=random_half", "half=A"]), tmp_path / "base")
    cfg = make_cfg(
        [
            "split=random_half",
            "half=B",
            f"init.from={base['checkpoint']}",
            "init.groups=2",
            "strategy=freeze_to",
            "strategy.k=2",
            "diagnostics.cka=true",
            "diagnostics.probe_size=16",
        ]
    )
    result = train(cfg, tmp_path / "run")
    groups = [g["name"] for g in result["groups"]]
    assert result["status"] == "ok" and result["cka_probe"] == {"part": "val", "size": 16, "start_epoch": 0}
    for key in ("cka", "cka_vs_base"):
        assert list(result[key]) == groups
        assert all(0 <= v <= 1 + 1e-9 for v in result[key].values())
    # The copied, frozen groups compute exactly what they computed at the start and in the base: CKA 1.
    for g in groups[:2]:
        assert result["cka"][g] == pytest.approx(1.0, abs=1e-9)
        assert result["cka_vs_base"][g] == pytest.approx(1.0, abs=1e-9)
    # The trained head moved away from its random start.
    assert result["cka"]["head"] < 0.999
    assert "cka_vs_baseB" not in result  # not a transfer treatment


def test_transfer_treatment_gets_cka_against_baseB(make_cfg, tmp_path):
    grid = [
        "transfer=yosinski",
        "split=random_half",
        "transfer.treatment=BnB",
        "transfer.n=2",
        "diagnostics.cka=true",
    ]
    result = train(make_cfg(grid), tmp_path / "bnb")
    # BnB copies from baseB: "its base" and "baseB" are the same network, copied layers identical to it.
    assert result["cka_vs_base"] == pytest.approx(result["cka_vs_baseB"], abs=1e-12)
    assert result["cka_vs_baseB"]["conv1"] == pytest.approx(1.0, abs=1e-9)
    # The analysis side finds baseB's record (in the base cache) from the treatment's record alone.
    from analysis.diagnostics import cka_frame, with_bases

    frame = cka_frame(with_bases([result]))
    assert set(frame["treatment"]) == {"BnB", "baseB"}
    assert len(frame.query("treatment == 'baseB' and against == 'start'")) == len(result["groups"])


def test_a_comparison_that_cannot_be_made_is_a_warning_not_a_failure(make_cfg, monkeypatch):
    import harness.diagnostics.cka as cka
    from harness.assemble import assemble_run

    run = assemble_run(make_cfg())
    hook = cka.CkaHook(make_cfg().model, init_from=None, probe_size=8)
    hook.on_run_start(run)
    record = {"transfer": {"baseB": {"path": "/nonexistent/base"}}, "warnings": []}
    hook.on_run_end(run, record)
    assert list(record["cka"]) == run.model.names and "cka_vs_baseB" not in record
    assert record["warnings"][0].startswith(
        "diagnostics: cka_vs_baseB skipped: checkpoint '/nonexistent/base/"
    )

    def broken(model, x):
        raise ValueError("layer groups ['x'] produced no tensor output")

    monkeypatch.setattr(cka, "group_grams", broken)
    hook = cka.CkaHook(make_cfg().model, init_from=None)
    hook.on_run_start(run)
    record = {"warnings": []}
    hook.on_run_end(run, record)
    assert "cka" not in record and record["warnings"] == [
        "diagnostics: CKA skipped: ValueError: layer groups ['x'] produced no tensor output"
    ]
