"""The per-phase summary table: fastai's ``learn.summary()``, per layer group, with the real lr."""

from __future__ import annotations

from harness.models.groups import GroupedModel
from harness.plan.freezing import GroupParams, partial_ids
from harness.plan.strategies import Plan


def phase_rows(model: GroupedModel, params: list[GroupParams], plan: Plan, index: int) -> list[dict]:
    phase = plan.phases[index]
    also = partial_ids(model, phase.partial)
    rows = []
    for group, gp, lr in zip(model.groups, params, phase.lr, strict=True):
        trains = group.name in phase.trainable
        norm_trains = bool(gp.norm) and plan.bn == "train"
        bias_trains = any(id(p) in also for p in gp.other)  # BitFit: biases train inside frozen groups
        if trains:
            # "-": the group has no norm layers, so the policy does not apply to it.
            state, bn_mode, rate = "yes", "train" if gp.norm else "-", lr
        else:
            state = "bias" if bias_trains else "bn only" if norm_trains else "no"
            bn_mode = plan.bn if gp.norm else "-"
            rate = lr if norm_trains or bias_trains else 0.0
        rows.append(
            {
                "group": group.name,
                "modules": ", ".join(group.prefixes),
                "params": sum(p.numel() for p in gp.all),
                "trainable": state,
                "bn": bn_mode,
                "lr": rate,
            }
        )
    return rows


def format_table(rows: list[dict], title: str = "") -> str:
    if not rows:
        return title
    cells = [[str(k) for k in rows[0]]] + [[_fmt(v) for v in r.values()] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = [title] if title else []
    for j, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if value else "0"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
