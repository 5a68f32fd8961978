import math

import pytest
import torch

from harness.lr_find import exp_rate, lr_find, plot, suggest_minimum, suggest_steep, suggest_valley
from tests.test_freezing import setup, snapshot


def test_exponential_sweep_endpoints():
    assert exp_rate(1e-7, 10, 0) == pytest.approx(1e-7)
    assert exp_rate(1e-7, 10, 1) == pytest.approx(10)
    assert exp_rate(1e-7, 10, 0.5) == pytest.approx(math.sqrt(1e-7 * 10))


def test_suggestions_on_a_known_curve():
    lrs = [10 ** (-6 + i * 0.1) for i in range(60)]
    # flat, then a steep fall centred at 1e-3, then blow-up
    losses = [
        2.0 - 1.5 / (1 + math.exp(-(math.log10(lr) + 3) * 4)) + (max(0, math.log10(lr) + 1.5)) ** 2
        for lr in lrs
    ]
    assert suggest_minimum(lrs, losses) == pytest.approx(lrs[losses.index(min(losses))] / 10)
    assert suggest_steep(lrs, losses) == pytest.approx(1e-3, rel=0.3)
    assert 1e-4 < suggest_valley(lrs, losses) < lrs[losses.index(min(losses))]


def test_lr_find_restores_model_and_keeps_slice_ratios(make_cfg, tmp_path):
    run = setup(
        make_cfg(
            [
                "strategy=freeze_to",
                "strategy.k=1",
                "strategy.lr={lo:1e-4,hi:1e-2}",
                "model.batchnorm=true",
                "model.dropout=0.3",
            ]
        )
    )
    before = snapshot(run)
    grads_before = [p.requires_grad for p in run.model.net.parameters()]
    rng = torch.get_rng_state()
    result = lr_find(
        run.model, run.params, run.plan, run.data, run.optim_cfg, device="cpu", batch_size=16, num_it=40
    )
    after = snapshot(run)
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN buffers, bit for bit
    assert [p.requires_grad for p in run.model.net.parameters()] == grads_before
    assert torch.equal(torch.get_rng_state(), rng)
    assert 3 <= len(result.lrs) <= 40 and result.lrs == sorted(result.lrs)
    phase = run.plan.phases[0]
    assert result.ratios == pytest.approx([lr / phase.lr[-1] for lr in phase.lr])
    assert result.suggestion()[-1] == pytest.approx(result.valley)
    assert result.suggestion()[0] == pytest.approx(result.valley * phase.lr[0] / phase.lr[-1])
    plot(result, tmp_path / "lr_find.png")
    assert (tmp_path / "lr_find.png").stat().st_size > 1000
