"""``python -m harness.lr_find``: fastai's learning-rate range test, on the first phase of the plan.

The network is the one ``python -m harness.train <same overrides>`` would train (``init.from``, a transfer
treatment with its bases, strategy, threads, determinism: :func:`harness.runner.prepare` and
:func:`harness.assemble.assemble_run`, as training). The sweep trains the plan's first phase with the run's
own optimizer settings, built fresh, on the batches training would see first. At step ``i`` of ``num_it``
the rate is ``start_lr * (end_lr / start_lr) ** (i / num_it)`` (fastai's ``train_iter / num_it``); the loss is
smoothed (moving average, beta 0.98, bias-corrected) and the sweep stops once it exceeds 4x the best smoothed
loss. The suggestions are fastai's four (``valley``, ``slide``, ``minimum``: the lowest loss's rate / 10,
``steep``), on the points fastai uses (the first ``num_it // 10`` and the last 5 left out). Afterwards the
weights and buffers, ``requires_grad``, every module's train/eval mode, the gradients and every RNG (python,
numpy, torch CPU and CUDA) are as they were; a ``run.optimizer`` is never touched.

``lr_find.keep_ratios=true`` (the default) keeps the ratios of the phase's discriminative slice: the swept
value is the rate of the trainable group with the highest peak rate (the head, for a slice) and every other
group moves with it. ``false`` is fastai's (and Lightning's) flat sweep: every group gets the swept rate.

Differences from fastai's ``Learner.lr_find`` that remain (the option that gives fastai's behaviour, where
there is one): the smoothed loss is computed in float64, fastai's in float32 (suggestions agree to ~1e-6);
a non-finite loss ends the sweep at once, where fastai sweeps on to ``num_it`` (the suggestions are the same,
both use the points before it); ``num_it`` must be >= 2, where fastai silently raises values below 6 to 6;
with fewer points than fastai's window needs, the suggestions use every finite point and ``slide`` shortens
its 15-point interval (fastai raises an IndexError); the sweep starts from a fresh optimizer, where fastai's
continues from whatever state ``learn.opt`` holds (the same for a new Learner); ``keep_ratios=true`` (use
``lr_find.keep_ratios=false``).
"""

from __future__ import annotations

import copy
import json
import math
import random
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import hydra
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from harness.config import checks
from harness.data import batches
from harness.engine.loop import Run, autocast
from harness.engine.optim import build_optimizer, set_rates
from harness.errors import ConfigError
from harness.plan import freezing
from harness.train import CONF_DIR

OPTIONS = {"start_lr": 1e-7, "end_lr": 10.0, "num_it": 100, "stop_div": True, "keep_ratios": True}
SUGGESTIONS = ("valley", "slide", "minimum", "steep")
LABELS = {"valley": "valley", "slide": "slide", "minimum": "minimum/10", "steep": "steep"}
BETA = 0.98  # fastai's AvgSmoothLoss


def check_options(options: Mapping | None) -> dict:
    """The ``lr_find`` section with defaults filled in; one-line ConfigError for anything else."""
    given = dict(options or {})
    for key in given:
        if key not in OPTIONS:
            hint = checks.closest(key, OPTIONS)
            raise ConfigError(
                f"lr_find.{key} is not an lr_find option"
                + (f"; did you mean lr_find.{hint}?" if hint else "")
                + f" Allowed: {', '.join(OPTIONS)}"
            )
    out = {**OPTIONS, **given}
    checks.integer(out["num_it"], "lr_find.num_it", low=2)
    start = checks.number(out["start_lr"], "lr_find.start_lr", above=0)
    end = checks.number(out["end_lr"], "lr_find.end_lr", above=0)
    if not start < end:
        raise ConfigError(
            f"lr_find.start_lr={out['start_lr']!r} must be below lr_find.end_lr={out['end_lr']!r} "
            "(the rate grows from start_lr to end_lr)"
        )
    checks.boolean(out["stop_div"], "lr_find.stop_div")
    checks.boolean(out["keep_ratios"], "lr_find.keep_ratios")
    return {**out, "start_lr": start, "end_lr": end}


@dataclass
class LrFindResult:
    lrs: list[float]  # the swept rate at each step (the reference group's; every group's when flat)
    losses: list[float]  # smoothed loss at each step
    groups: list[str]  # every layer group, input side first
    trainable: list[str]  # the groups that train in the swept phase: the only ones suggestions are for
    reference: str | None  # the group whose rate is swept (keep_ratios); None: every group at that rate
    ratios: list[float]  # each group's rate / the swept rate during the sweep
    phase: str
    num_it: int
    stopped: str  # num_it | diverged (4x the best loss) | not finite
    window: list[int]  # [first, end) of the points the suggestions were computed on
    valley: float
    slide: float
    minimum: float  # fastai's "minimum": the rate at the lowest loss / 10
    steep: float

    def suggestion(self, name: str = "valley") -> list[float]:
        """The rate of every group (frozen ones too) for suggestion ``name``, the sweep's ratios applied."""
        return [getattr(self, name) * r for r in self.ratios]

    def suggested(self, name: str = "valley") -> dict[str, float]:
        """Suggestion ``name`` for the groups that train in the swept phase."""
        rates = dict(zip(self.groups, self.suggestion(name), strict=True))
        return {g: rates[g] for g in self.trainable}

    def to_dict(self) -> dict:
        return {**asdict(self), "suggestions": {name: self.suggested(name) for name in SUGGESTIONS}}


# --- the rate and the suggestions: pure functions ---------------------------------------------------------


def exp_rate(start: float, end: float, pos: float) -> float:
    return start * (end / start) ** pos


def suggest_minimum(lrs, losses) -> float:
    return lrs[min(range(len(losses)), key=losses.__getitem__)] / 10


def suggest_steep(lrs, losses) -> float:
    """The rate where the loss falls fastest against log(lr) (the left end of the steepest segment)."""
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
        # fastai checks this inside the j loop; the same: run_length[i] can beat the record by one at most
        if run_length[i] > run_length[best_end]:
            best_end = i
            best_start = best_end - run_length[best_end]
    third = (best_end - best_start) / 3
    return lrs[best_start + int(third) + int(third / 2)]


def suggest_slide(lrs, losses, lr_diff: int = 15, thresh: float = 0.005, adjust_value: float = 1.0) -> float:
    """fastai's interval slide rule: from the end, move an interval of ``lr_diff`` points towards lower rates
    while the loss gradients at its two ends differ by more than ``thresh``; its left end is the suggestion."""
    grads = np.gradient(np.asarray(losses, dtype=float))
    right = len(losses) - 1
    left = right - min(lr_diff, right)  # fastai needs lr_diff + 1 points; fewer: a shorter interval
    found = lrs[left]
    while left >= 0 and abs(grads[right] - grads[left]) > thresh:
        found = lrs[left]
        right -= 1
        left -= 1
    return found * adjust_value


SUGGEST = {
    "valley": suggest_valley,
    "slide": suggest_slide,
    "minimum": suggest_minimum,
    "steep": suggest_steep,
}


def suggestion_window(losses: list[float], num_it: int) -> tuple[int, int]:
    """fastai's points for the suggestions: leave out the first ``num_it // 10`` and the last 5, and stop at the
    first non-finite loss. fastai sweeps on through a NaN (NaN is never 4x the best) to ``num_it`` points, so its
    "last 5" are counted from there; with fewer than two points left, every finite point is used."""
    bad = next((i for i, v in enumerate(losses) if not math.isfinite(v)), len(losses))
    recorded = num_it if any(math.isnan(v) for v in losses) else len(losses)
    first, end = num_it // 10, min(recorded - 5, bad)
    if end - first < 2:
        first, end = 0, bad
    if end < 2:
        raise ConfigError(
            f"lr_find: the loss was finite for {bad} step(s) only; lower lr_find.start_lr "
            "or check the data and model"
        )
    return first, end


# --- the sweep ----------------------------------------------------------------------------------------------


def sweep_ratios(
    rates: list[float], trainable_index: list[int], keep_ratios: bool
) -> tuple[list[float], int]:
    """Each group's rate as a multiple of the swept one, and the index of the reference group (-1: flat)."""
    if not keep_ratios:
        return [1.0] * len(rates), -1
    reference = max(trainable_index, key=lambda i: (rates[i], i))  # the highest rate; the last on ties
    return [r / rates[reference] for r in rates], reference


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_initialized():  # a CUDA generator that was never set up cannot have moved
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def lr_find(
    run: Run,
    *,
    start_lr: float = OPTIONS["start_lr"],
    end_lr: float = OPTIONS["end_lr"],
    num_it: int = OPTIONS["num_it"],
    stop_div: bool = OPTIONS["stop_div"],
    keep_ratios: bool = OPTIONS["keep_ratios"],
    batch_size: int | None = None,
) -> LrFindResult:
    """Sweep the plan's first phase of ``run``; leave the run exactly as it was (see the module docstring)."""
    options = check_options(
        dict(start_lr=start_lr, end_lr=end_lr, num_it=num_it, stop_div=stop_div, keep_ratios=keep_ratios)
    )
    start_lr, end_lr = options["start_lr"], options["end_lr"]
    plan, net = run.plan, run.model.net
    phase = plan.phases[0]
    ratios, reference = sweep_ratios(
        phase.lr, [plan.groups.index(g) for g in phase.trainable], options["keep_ratios"]
    )
    parameters = list(net.parameters())
    saved = {
        "weights": copy.deepcopy(net.state_dict()),
        "requires_grad": [p.requires_grad for p in parameters],
        "grads": [p.grad for p in parameters],
        "modes": [(m, m.training) for m in net.modules()],
        "rng": rng_state(),
    }
    lrs, losses = [], []
    stopped = "num_it"
    try:
        freezing.apply_trainable(run.params, phase.trainable, plan.bn)
        # Fresh, with the run's own settings (fastai's lr_find on a new Learner starts from a fresh one too).
        optimizer = build_optimizer(run.optim_cfg, run.params, phase.lr)
        average, best, epoch = 0.0, math.inf, 0
        while stopped == "num_it" and len(lrs) < num_it:
            freezing.set_modes(run.model, phase.trainable, plan.bn)
            order = batches(
                run.data.train,
                batch_size or run.batch_size,
                shuffle=True,
                seed=run.shuffle_seed(epoch),  # the batches training would see first
                device=run.device,
            )
            # augmented as training augments them (data.augment on the device; its own generator)
            seed = run.shuffle_seed(epoch) * 2 + 1
            augment = run.augment.for_epoch(seed, run.device) if run.augment is not None else None
            for x, y in order:
                if augment is not None:
                    x = augment(x)
                lr = exp_rate(start_lr, end_lr, len(lrs) / num_it)
                set_rates(optimizer, ratios, lr, None)
                optimizer.zero_grad(set_to_none=True)
                with autocast(run.device, run.bf16):
                    loss = F.cross_entropy(net(x).float(), y)
                loss.backward()
                optimizer.step()
                average = BETA * average + (1 - BETA) * loss.item()
                smooth = average / (1 - BETA ** (len(lrs) + 1))
                lrs.append(lr)
                losses.append(smooth)
                best = min(best, smooth)
                if not math.isfinite(smooth):
                    stopped = "not finite"
                elif options["stop_div"] and smooth > 4 * best:
                    stopped = "diverged"
                if stopped != "num_it" or len(lrs) >= num_it:
                    break
            epoch += 1
    finally:
        net.load_state_dict(saved["weights"])
        for p, flag, grad in zip(parameters, saved["requires_grad"], saved["grads"], strict=True):
            p.requires_grad_(flag)
            p.grad = grad
        for module, training in saved["modes"]:
            module.training = training
        set_rng_state(saved["rng"])

    first, end = suggestion_window(losses, num_it)
    window_lrs, window_losses = lrs[first:end], losses[first:end]
    return LrFindResult(
        lrs=lrs,
        losses=losses,
        groups=list(plan.groups),
        trainable=list(phase.trainable),
        reference=plan.groups[reference] if reference >= 0 else None,
        ratios=ratios,
        phase=phase.name,
        num_it=num_it,
        stopped=stopped,
        window=[first, end],
        **{name: float(SUGGEST[name](window_lrs, window_losses)) for name in SUGGESTIONS},
    )


# --- output -------------------------------------------------------------------------------------------------


def describe(result: LrFindResult) -> str:
    """What was swept and the suggestions for the groups that train, one line each."""
    swept = f"the rate of '{result.reference}'" if result.reference else "one rate for every group (flat)"
    if result.reference and len(result.trainable) > 1:
        swept += " (the other groups keep their ratio to it)"
    lines = [
        f"lr_find: phase '{result.phase}' (trains {', '.join(result.trainable)}), {len(result.lrs)} of "
        f"{result.num_it} steps (stopped: {result.stopped}), sweeping {swept}",
        "suggested rates of the groups that train:",
    ]
    for name in SUGGESTIONS:
        rates = ", ".join(f"{g}={v:.2e}" for g, v in result.suggested(name).items())
        lines.append(f"  {LABELS[name]:<11} {rates}")
    return "\n".join(lines)


def plot(result: LrFindResult, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = figure(result)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def figure(result: LrFindResult):
    """The curve, the points the suggestions use, and each suggestion marked and named in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    first, end = result.window
    ax.plot(result.lrs, result.losses, color="0.7", lw=1.0, label="smoothed loss")
    ax.plot(result.lrs[first:end], result.losses[first:end], color="black", lw=1.4, label="used to suggest")
    finite = [(math.log(lr), v) for lr, v in zip(result.lrs, result.losses, strict=True) if math.isfinite(v)]
    # Hollow markers of falling size: two suggestions at the same rate both stay visible.
    for size, name, marker in zip((13, 10, 8, 6), SUGGESTIONS, ("o", "D", "s", "^"), strict=True):
        value = getattr(result, name)
        at = float(np.interp(math.log(value), *zip(*finite, strict=True)))
        ax.plot(value, at, marker, ms=size, mfc="none", mew=2, label=f"{LABELS[name]}: {value:.2e}")
    ax.set_xscale("log")
    label = (
        f"learning rate of group '{result.reference}'" if result.reference else "learning rate (every group)"
    )
    if result.reference and len(result.trainable) > 1:
        label += " (the others keep their ratio to it)"
    ax.set_xlabel(label)
    ax.set_ylabel("smoothed training loss")
    ax.set_title(f"LR range test, phase '{result.phase}': trains {', '.join(result.trainable)}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def find(cfg: DictConfig, output_dir: str | Path) -> LrFindResult:
    """The range test of the run ``cfg`` describes; writes ``lr_find.json`` and ``lr_find.png`` there.

    The options are checked first, then the run is prepared as training prepares it (a transfer treatment's
    bases are fetched or trained) and assembled (every other check)."""
    from harness.assemble import assemble_run
    from harness.config.schema import check_config
    from harness.runner import prepare

    check_config(cfg)  # every key, before prepare trains any base a treatment needs
    section = cfg.get("lr_find")
    options = check_options(OmegaConf.to_container(section, resolve=True) if section is not None else None)
    run_cfg, _ = prepare(cfg)
    run = assemble_run(run_cfg)
    result = lr_find(run, **options)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "lr_find.json").write_text(json.dumps(result.to_dict(), indent=1))
    plot(result, out / "lr_find.png")
    return result


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    out = Path(HydraConfig.get().runtime.output_dir)
    try:
        result = find(cfg, out)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(describe(result))
    print(f"plot: {out / 'lr_find.png'}")
    if cfg.strategy.get("name") == "full_unfreeze":  # fastai's lesson: fine_tune at lr_find's suggestion
        task = " ".join(HydraConfig.get().overrides.task)
        print(f"train: python -m harness.train {task} strategy.base_lr={result.valley:.2e}")


if __name__ == "__main__":
    from harness.config.cli import run_entry_point

    run_entry_point(main)
