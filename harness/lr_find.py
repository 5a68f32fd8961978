"""``python -m harness.lr_find``: fastai's learning-rate range test, on the first phase of the plan.

The rate grows exponentially from ``start_lr`` to ``end_lr`` over ``num_it`` steps; the loss is smoothed
(exponential moving average, beta 0.98, bias-corrected) and the test stops once it exceeds 4x the best
smoothed loss. Model and optimizer are restored afterwards, bit for bit.

Unlike fastai and Lightning, which sweep one rate for every group, the sweep keeps the ratios of the
phase's discriminative slice: the swept value is the head's rate and every other group moves with it.
"""

from __future__ import annotations

import copy
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import hydra
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from harness.data import batches
from harness.engine.optim import build_optimizer, set_rates
from harness.errors import ConfigError
from harness.plan import freezing
from harness.train import CONF_DIR


@dataclass
class LrFindResult:
    lrs: list[float]  # head rate at each step
    losses: list[float]  # smoothed loss at each step
    ratios: list[float]  # each group's rate / the head's rate (the slice kept during the sweep)
    valley: float
    minimum: float  # fastai's "minimum/10"
    steep: float

    def suggestion(self, name: str = "valley") -> list[float]:
        """The suggested rate of every group, slice ratios applied."""
        return [getattr(self, name) * r for r in self.ratios]


def exp_rate(start: float, end: float, pos: float) -> float:
    return start * (end / start) ** pos


def suggest_minimum(lrs, losses) -> float:
    return lrs[min(range(len(losses)), key=losses.__getitem__)] / 10


def suggest_steep(lrs, losses) -> float:
    """The rate where the loss falls fastest against log(lr)."""
    slopes = [
        (losses[i + 1] - losses[i]) / (math.log(lrs[i + 1]) - math.log(lrs[i])) for i in range(len(lrs) - 1)
    ]
    return lrs[min(range(len(slopes)), key=slopes.__getitem__)]


def suggest_valley(lrs, losses) -> float:
    """fastai's default: inside the longest run of decreasing loss, a point a bit past its first third."""
    n = len(losses)
    run_length = [1] * n  # length of the longest decreasing subsequence ending at i
    best_start, best_end = 0, 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and run_length[i] < run_length[j] + 1:
                run_length[i] = run_length[j] + 1
        if run_length[i] > run_length[best_end]:
            best_end = i
            best_start = best_end - run_length[best_end]
    third = (best_end - best_start) / 3
    return lrs[best_start + int(third) + int(third / 2)]


def lr_find(
    model,
    params,
    plan,
    data,
    optim_cfg,
    *,
    device,
    batch_size: int,
    start_lr=1e-7,
    end_lr=10.0,
    num_it=100,
    stop_div=True,
    seed=0,
) -> LrFindResult:
    """Run the range test on the plan's first phase and restore model and optimizer afterwards."""
    if not 0 < start_lr < end_lr:
        raise ConfigError(
            f"lr_find: start_lr={start_lr} and end_lr={end_lr} must satisfy 0 < start_lr < end_lr"
        )
    phase = plan.phases[0]
    ratios = [lr / max(phase.lr) for lr in phase.lr]
    saved_model = copy.deepcopy(model.net.state_dict())
    saved_grad = [p.requires_grad for p in model.net.parameters()]
    freezing.apply_trainable(params, phase.trainable, plan.bn)
    optimizer = build_optimizer(optim_cfg, params, phase.lr)
    saved_optimizer = copy.deepcopy(optimizer.state_dict())
    rng = torch.get_rng_state()

    lrs, losses = [], []
    average, best = 0.0, float("inf")
    step, epoch = 0, 0
    try:
        while step < num_it:
            freezing.set_modes(model, phase.trainable, plan.bn)
            for x, y in batches(
                data.train, batch_size, shuffle=True, seed=seed * 7919 + epoch, device=device
            ):
                lr = exp_rate(start_lr, end_lr, step / (num_it - 1))
                set_rates(optimizer, ratios, lr, None)
                optimizer.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model.net(x), y)
                loss.backward()
                optimizer.step()
                step += 1
                average = 0.98 * average + 0.02 * loss.item()
                smooth = average / (1 - 0.98**step)
                lrs.append(lr)
                losses.append(smooth)
                best = min(best, smooth)
                if stop_div and (smooth > 4 * best or not math.isfinite(smooth)) or step >= num_it:
                    break
            else:
                epoch += 1
                continue
            break
    finally:
        model.net.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_optimizer)
        for p, flag in zip(model.net.parameters(), saved_grad, strict=True):
            p.requires_grad_(flag)
            p.grad = None
        torch.set_rng_state(rng)

    # Like fastai, leave out the first tenth and the last few points (warm-up noise, divergence).
    lo, hi = num_it // 10, max(num_it // 10 + 2, len(lrs) - 5)
    cut_lrs, cut_losses = lrs[lo:hi] or lrs, losses[lo:hi] or losses
    if len(cut_lrs) < 3:
        raise ConfigError(
            f"lr_find: only {len(lrs)} steps ran before the loss diverged; lower lr_find.start_lr"
        )
    return LrFindResult(
        lrs,
        losses,
        ratios,
        suggest_valley(cut_lrs, cut_losses),
        suggest_minimum(cut_lrs, cut_losses),
        suggest_steep(cut_lrs, cut_losses),
    )


def plot(result: LrFindResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result.lrs, result.losses, color="black", lw=1.2)
    for name, label, marker in (
        ("valley", "valley", "o"),
        ("minimum", "minimum/10", "s"),
        ("steep", "steep", "^"),
    ):
        value = getattr(result, name)
        i = min(range(len(result.lrs)), key=lambda k: abs(math.log(result.lrs[k] / value)))
        ax.plot(value, result.losses[i], marker, ms=8, label=f"{label}: {value:.2e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate of the head group (other groups keep the slice ratios)")
    ax.set_ylabel("smoothed training loss")
    ax.set_title("LR range test")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from harness.assemble import assemble_run
    from harness.config.schema import check_config
    from harness.runner import prepare

    out = Path(HydraConfig.get().runtime.output_dir)
    try:
        # The network exactly as `python -m harness.train <same overrides>` would train it.
        check_config(cfg)  # every key, before prepare trains any base a treatment needs
        run_cfg, _ = prepare(cfg)
        run = assemble_run(run_cfg)
        plan = run.plan
        options = cfg.get("lr_find") or {}
        result = lr_find(
            run.model,
            run.params,
            plan,
            run.data,
            run.optim_cfg,
            device=run.device,
            batch_size=run.batch_size,
            seed=run.seed,
            **options,
        )
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    out.mkdir(parents=True, exist_ok=True)
    (out / "lr_find.json").write_text(json.dumps(asdict(result), indent=1))
    plot(result, out / "lr_find.png")
    print(
        f"valley {result.valley:.2e}  minimum/10 {result.minimum:.2e}  steep {result.steep:.2e} (head group)"
    )
    print(
        "suggested per-group rates (valley):",
        ", ".join(f"{g}={v:.2e}" for g, v in zip(plan.groups, result.suggestion(), strict=True)),
    )
    print(f"plot: {out / 'lr_find.png'}")


if __name__ == "__main__":
    from harness.config.cli import run_entry_point

    run_entry_point(main)
