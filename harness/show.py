"""``python -m harness.show RUN_DIR``: what a finished run did to each layer group, after the fact.

Prints, from the run's ``result.json`` alone (no model is loaded): the plan, the per-phase summary
(group, #params, trainable, bn mode, lr: fastai's ``learn.summary()`` as it was at each phase start), the
weight-change table (``||W_t - W_0|| / ||W_0||`` per group and epoch), the per-phase diagnostics at each
phase's last epoch, CKA when it was measured, and the record's warnings. ``RUN_DIR`` is a run folder or
its ``result.json``; a bad path is one line ``error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.console import plural
from harness.plan.summary import format_table
from harness.record import RECORD_NAME


class InspectError(Exception):
    """A path that holds no readable run record."""


def read_run(path: str | Path) -> tuple[Path, dict]:
    path = Path(path)
    file = path / RECORD_NAME if path.is_dir() else path
    if not path.exists():
        raise InspectError(f"'{path}' does not exist")
    if not file.is_file():
        raise InspectError(f"no {RECORD_NAME} in '{path}' (for a multirun, pass one job's folder)")
    try:
        record = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InspectError(f"'{file}' is not a readable run record: {type(e).__name__}: {e}") from None
    if not isinstance(record, dict) or "summary" not in record or "plan" not in record:
        raise InspectError(f"'{file}' is not a freezelab run record (no 'plan' or 'summary')")
    return file, record


def _num(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "0" if value == 0 else f"{value:.3g}"
    return str(value)


def _epochs(epochs: list[int]) -> str:
    return f"epoch {epochs[0]}" if len(epochs) == 1 else f"epochs {epochs[0]}-{epochs[-1]}"


def summary_section(record: dict) -> list[str]:
    plan = record["plan"]
    lines = [
        f"plan: {plan['strategy']}, {plural(sum(p['epochs'] for p in plan['phases']), 'epoch')}; "
        f"norm layers of frozen groups: {plan['bn']}; optimizer state on unfreeze: {plan['optimizer_state']}"
    ]
    for i, (phase, rows) in enumerate(zip(plan["phases"], record["summary"], strict=True)):
        # The modules column only says something when a group is not one module of the same name.
        keep = [k for k in rows[0] if k != "modules" or any(r["modules"] != r["group"] for r in rows)]
        table = [{k: r[k] for k in keep} for r in rows]
        lines += [
            "",
            format_table(
                table,
                f"phase {i + 1}/{len(plan['phases'])} '{phase['name']}' "
                f"({plural(phase['epochs'], 'epoch')}, {phase['schedule']['name']})",
            ),
        ]
    return lines


def diagnostics_rows(record: dict) -> list[dict]:
    section = record.get("diagnostics") or {}
    return [dict(zip(section["columns"], row, strict=True)) for row in section.get("data", [])]


def change_section(record: dict, rows: list[dict]) -> list[str]:
    groups = list(dict.fromkeys(r["group"] for r in rows))
    epochs = sorted({r["epoch"] for r in rows})
    value = {(r["group"], r["epoch"]): r for r in rows}
    phases: dict[int, list[int]] = {}
    for r in rows:
        phases.setdefault(r["phase_index"], [])
        if r["epoch"] not in phases[r["phase_index"]]:
            phases[r["phase_index"]].append(r["epoch"])
    names = record["plan"]["phases"]
    where = "; ".join(f"phase {i + 1} '{names[i]['name']}' = {_epochs(e)}" for i, e in sorted(phases.items()))
    table = []
    for g in groups:
        row = {"group": g}
        for e in epochs:
            cell = value[(g, e)]
            # '*' marks an epoch in which the plan froze the group: its change must not grow there
            # (norm-layer affine parameters excepted under bn=train).
            row[f"{e}"] = _num(cell["change_start"]) + ("" if cell["trainable"] else "*")
        table.append(row)
    start = (record.get("diagnostics") or {}).get("start_epoch") or 0
    origin = "the run's start" if not start else f"the resume after epoch {start}"
    return [
        "",
        format_table(
            table,
            f"weight change ||W_t - W_0|| / ||W_0|| since {origin}, per group (rows) "
            f"at the end of each epoch (columns); * = frozen by the plan that epoch",
        ),
        f"  {where}",
    ]


def _state(row: dict, bn: str) -> str:
    """The summary's words: yes, bn only (frozen but its norm layers train under bn=train), no."""
    if row["trainable"]:
        return "yes"
    return "bn only" if row["norm_change"] is not None and bn == "train" else "no"


def phase_detail_section(record: dict, rows: list[dict]) -> list[str]:
    last: dict[tuple[int, str], dict] = {}
    for r in rows:
        last[(r["phase_index"], r["group"])] = r  # rows come in epoch order: keep each phase's last epoch
    bn = record["plan"]["bn"]
    table = [
        {
            "phase": f"{r['phase_index'] + 1} {r['phase']}",
            "group": r["group"],
            "trainable": _state(r, bn),
            "epoch peak lr": _num(r["lr"]),
            "change in phase": _num(r["change_phase"]),
            "grad norm": _num(r["grad_norm"]),
            "update/weight": _num(r["update_ratio"]),
            "norm affine change": _num(r["norm_change"]),
            "bn stats drift": _num(r["stats_drift"]),
        }
        for r in last.values()
    ]
    note = "; norm columns: since the run's start"
    if all(t["norm affine change"] == "-" and t["bn stats drift"] == "-" for t in table):
        note = ""
        for t in table:  # no norm layers anywhere: two empty columns say nothing
            del t["norm affine change"], t["bn stats drift"]
    rms = "grad norm and update/weight: root mean square over the epoch's steps"
    title = f"per phase, at its last epoch ({rms}{note})"
    return ["", format_table(table, title)]


def cka_section(record: dict) -> list[str]:
    columns = {"cka": "vs start", "cka_vs_base": "vs init.from", "cka_vs_baseB": "vs baseB"}
    present = {k: v for k, v in columns.items() if record.get(k)}
    if not present:
        return []
    groups = list(dict.fromkeys(g for k in present for g in record[k]))
    table = [{"group": g, **{label: _num(record[k].get(g)) for k, label in present.items()}} for g in groups]
    probe = record.get("cka_probe") or {}
    return [
        "",
        format_table(
            table,
            f"linear CKA of each group's output, trained network vs ... (1 = the same "
            f"representation; probe: first {probe.get('size', '?')} {probe.get('part', '')} "
            f"examples)",
        ),
    ]


def render(file: Path, record: dict) -> str:
    metrics = record.get("metrics") or {}
    lines = [
        f"run {record.get('run_id')} ({file}): status {record.get('status')}"
        + (f" ({record['reason']})" if record.get("reason") else "")
        + f", val_acc {_num(metrics.get('val_acc'))}, test_acc {_num(metrics.get('test_acc'))}"
    ]
    lines += summary_section(record)
    rows = diagnostics_rows(record)
    if rows:
        lines += change_section(record, rows) + phase_detail_section(record, rows)
    else:
        lines += ["", "no weight diagnostics in this record (it ran with diagnostics.weights=false)"]
    lines += cka_section(record)
    warnings = record.get("warnings") or []
    lines += ["", f"warnings ({len(warnings)}):" if warnings else "warnings: none"]
    lines += [f"  - {w}" for w in warnings]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.show",
        description="Per-phase summary and weight-change table of a finished run (from its result.json).",
    )
    parser.add_argument("run", help=f"a run folder (holding {RECORD_NAME}) or the {RECORD_NAME} file itself")
    args = parser.parse_args(argv)
    try:
        file, record = read_run(args.run)
        text = render(file, record)
    except InspectError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (KeyError, TypeError, ValueError) as e:  # a record of another shape: say so in one line
        print(
            f"error: '{args.run}' has a record this inspector cannot read ({type(e).__name__}: {e})",
            file=sys.stderr,
        )
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
