"""The strategy benchmark's analysis (analysis/benchmark.py) on synthetic records whose answers are known."""

import numpy as np
import pytest

from analysis import benchmark
from analysis.load import load_runs
from analysis.synthetic import fake_record, write_record

# strategy -> (test accuracy %, FLOPs) at full data; seeds add -0.1, 0, +0.1 points to every strategy alike
GRID = {
    "never": (99.0, 400e9),
    "autofreeze": (98.7, 200e9),  # within 0.5 pts at 50 %: the target holds
    "freezeout": (98.0, 300e9),  # 1 pt worse at 75 %: it does not
    "head_only": (96.0, 50e9),
    "full_unfreeze": (97.0, 430e9),
    "lp_ft": (97.4, 430e9),
    "bitfit": (95.0, 300e9),  # dominated by autofreeze: not on the front
}


def write_benchmark(root, grid=GRID, fractions=(0.1, 1.0)):
    for fraction in fractions:
        for name, (acc, flops) in grid.items():
            for seed, noise in zip((0, 1, 2), (-0.1, 0.0, 0.1), strict=True):
                shift = 0.0 if fraction == 1.0 else -2.0  # less data, lower accuracy, same ranking
                r = fake_record(treatment=None, strategy=name, seed=seed, value=(acc + shift + noise) / 100)
                r["run_id"] = f"{name}-{fraction}-{seed}"
                r["config"]["experiment_name"] = "strategy_benchmark"
                r["config"]["data"]["train_fraction"] = fraction
                r["data"]["train"] = int(1750 * fraction)
                r["compute"] = {"flops": flops * fraction, "train_flops": flops * fraction * 0.8}
                r["adaptive"] = (
                    {"froze_at": {"conv1": {"epoch": 1, "step": 5}}} if name == "autofreeze" else None
                )
                # what the phase maps of the report's strategy section read
                groups = r["plan"]["groups"]
                r["plan"]["phases"] = [
                    {"name": name, "epochs": 3, "trainable": groups, "lr": [0.02] * len(groups)}
                ]
                r["plan"]["bn"] = "train"
                r["groups"] = [{"name": g, "modules": [g], "params": 10} for g in groups]
                r["summary"] = [[{"group": g, "trainable": "yes", "bn": "-", "lr": 0.02} for g in groups]]
                write_record(root / f"{name}_f{fraction}_s{seed}", r)


def test_pareto_front_keeps_the_undominated_points():
    cost = np.array([1.0, 2.0, 3.0, 2.0, 4.0])
    acc = np.array([90.0, 95.0, 95.0, 93.0, 99.0])
    assert benchmark.pareto_front(cost, acc).tolist() == [True, True, False, False, True]
    # ties on both: each is on the front
    assert benchmark.pareto_front(np.array([1.0, 1.0]), np.array([5.0, 5.0])).tolist() == [True, True]


def test_table_per_data_size_with_cis_ratios_and_the_front(tmp_path):
    write_benchmark(tmp_path)
    frame = benchmark.benchmark_frame(load_runs(tmp_path))
    assert len(frame) == 2 * len(GRID) * 3 and frame["group"].nunique() == 2
    table = benchmark.benchmark_table(frame)
    full = table[table["data"].str.startswith("100 %")].set_index("variant")
    assert full.loc["never", "acc_mean"] == pytest.approx(99.0)
    assert full.loc["never", "acc_lo"] == pytest.approx(99.0 - 4.303 * 0.1 / 3**0.5, abs=1e-3)  # t(0.975, 2)
    assert full.loc["autofreeze", "flops_vs_never"] == pytest.approx(0.5)
    # paired by seed, the noise cancels: exactly -0.3 with a zero-width interval
    assert full.loc["autofreeze", "vs_never"] == pytest.approx(-0.3)
    assert full.loc["autofreeze", "vs_never_hi"] - full.loc["autofreeze", "vs_never_lo"] == pytest.approx(0)
    front = set(full.index[full["pareto_flops"]])
    assert front == {"head_only", "autofreeze", "never"}
    assert "conv1@e1" in full.loc["autofreeze", "froze"]
    small = table[table["data"].str.startswith("10 %")]
    assert (
        set(small["variant"]) == set(GRID)
        and small["data"].iloc[0] == "10 % of B's training data (175 images)"
    )


def test_findings_name_the_winners_and_check_the_targets(tmp_path):
    write_benchmark(tmp_path)
    frame = benchmark.benchmark_frame(load_runs(tmp_path))
    found = benchmark.findings(benchmark.benchmark_table(frame), frame)
    full = found[found["data"].str.startswith("100 %")].set_index("id")
    assert full.loc["best", "finding"] == "most accurate: never"
    assert full.loc["cheapest_near_best", "finding"].endswith(": autofreeze")
    assert (
        full.loc["target_autofreeze", "holds"] == "yes"
        and "50 % of never's FLOPs" in full.loc["target_autofreeze", "numbers"]
    )
    assert full.loc["target_freezeout", "holds"] == "no"
    assert full.loc["target_lp_ft", "holds"] == "yes" and full.loc["target_lp_ft", "numbers"].startswith(
        "+0.40"
    )
    when = full.loc["when", "finding"]
    assert "never" in when and "autofreeze" in when and "50 % fewer FLOPs" in when and "head_only" in when


def test_the_report_has_the_section_and_its_figures(tmp_path):
    from analysis.report import write_report

    # small: the report's strategy section draws several figures per strategy
    small = {k: GRID[k] for k in ("never", "autofreeze", "head_only")}
    write_benchmark(tmp_path / "runs", small, fractions=(1.0,))
    out = write_report(tmp_path / "runs")
    text = (out / "report.md").read_text()
    assert "## Strategy benchmark: accuracy against compute" in text
    assert text.count("Which strategy when") == 1
    for name in ("benchmark_accuracy_vs_flops", "benchmark_accuracy_vs_seconds"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 10_000
    assert "target: autofreeze within 0.5 pts" in text
