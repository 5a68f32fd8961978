"""Transferability tables on synthetic grids whose answers are known: CI per (treatment, n), the baseB line
(each base once), the findings check (yes / no / inconclusive / not measured), groups kept apart, the paper."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from analysis import paper
from analysis.load import load_runs
from analysis.synthetic import fake_record, write_grid, write_record
from analysis.transferability import (
    baseb_line,
    ci_table,
    findings,
    middle,
    side_by_side,
    side_by_side_wide,
    transfer_data,
    undertrained,
    upper,
)

NOISE = {0: -0.002, 1: 0.0, 2: 0.003}  # per split: gives the replicates a spread (fractions of 1)
EFFECT = {  # points vs baseB, shaped like the paper's findings
    ("AnB", 3): -2.0,
    ("AnB", 4): -5.0,
    ("BnB", 2): -2.0,
    ("BnB", 3): -2.0,
    ("AnB+", 1): 2.0,
    ("AnB+", 2): 2.0,
    ("AnB+", 3): 2.0,
    ("AnB+", 4): 2.0,
    ("random", 1): -20.0,
    ("random", 2): -20.0,
    ("random", 3): -20.0,
    ("random", 4): -20.0,
}


def base(s):
    return 0.90 + 0.001 * s


def paperlike(t, n, s):
    return base(s) + EFFECT.get((t, n), 0.0) / 100 + NOISE[s] * (1 + n / 10)


@pytest.fixture
def grid(tmp_path):
    write_grid(tmp_path / "grid", paperlike, base_value=base, experiment="paperlike")
    return tmp_path


def test_ci_table_matches_scipy(grid):
    td = transfer_data(load_runs(grid), "test_acc")
    table = ci_table(td, numeric=True).set_index(["treatment", "n"])
    values = [100 * paperlike("AnB", 4, s) for s in range(3)]
    lo, hi = st.t.interval(0.95, 2, loc=np.mean(values), scale=st.sem(values))
    row = table.loc[("AnB", 4)]
    assert row["runs"] == 3 and row["replicates"] == 3
    assert row["mean"] == pytest.approx(np.mean(values)) and (row["ci_lo"], row["ci_hi"]) == pytest.approx(
        (lo, hi)
    )
    diffs = [100 * (paperlike("AnB", 4, s) - base(s)) for s in range(3)]  # paired within each replicate
    assert row["delta"] == pytest.approx(np.mean(diffs)) and row["delta"] == pytest.approx(
        -5.0 + np.mean([100 * NOISE[s] * 1.4 for s in range(3)])
    )
    assert row["delta_lo"] == pytest.approx(
        st.t.interval(0.95, 2, loc=np.mean(diffs), scale=st.sem(diffs))[0]
    )
    assert len(table) == 1 + 5 * 4  # baseB + every (treatment, n)


def test_baseb_line_counts_each_base_once(grid):
    td = transfer_data(load_runs(grid))  # the default metric, test_acc_best_val_k
    line = baseb_line(td).iloc[0]
    bases = [100 * base(s) for s in range(3)]
    assert line["bases"] == 3  # 60 records carry a baseB; there are 3 distinct ones
    assert line["mean"] == pytest.approx(np.mean(bases))
    assert line["ci_hi"] == pytest.approx(st.t.interval(0.95, 2, loc=np.mean(bases), scale=st.sem(bases))[1])


def test_a_base_trained_again_under_a_new_key_counts_once(grid):
    # The same grid once more into the same folder, but its bases got new cache keys (the harness config gained
    # a key in between): same replicates, same numbers. The baseB line must still count 3 bases, not 6.
    for path in (grid / "grid").rglob("result.json"):
        rec = json.loads(path.read_text())
        rec["transfer"]["baseB"]["key"] += "x"
        rec["run_id"] += "x"
        write_record(grid / "again" / path.parent.name, rec)
    td = transfer_data(load_runs(grid), "test_acc")
    line = baseb_line(td).iloc[0]
    assert line["bases"] == 3 and line["keys"] == 6 and "counts once" in line["note"]
    table = ci_table(td, numeric=True).set_index(["treatment", "n"])
    assert table.loc[("AnB", 4), "runs"] == 6 and table.loc[("AnB", 4), "replicates"] == 3


def test_findings_hold_on_paperlike_data(grid):
    f = findings(transfer_data(load_runs(grid), "test_acc")).set_index("id")
    assert f.index[0] == "U" and f.loc["U", "holds"] == "yes"  # bases converged: what the findings rest on
    assert f.loc[["F1", "F2", "F3", "F4", "F5", "F6", "F7", "F9"], "holds"].tolist() == ["yes"] * 8
    assert f.loc["F8", "holds"] == "not measured" and "no dissimilar split" in f.loc["F8", "measured"]
    assert f.loc["F2", "d"] == pytest.approx(-5.0 + np.mean([100 * NOISE[s] * 0.3 for s in range(3)]))
    assert "AnB(n = 4) - AnB(n = 1)" in f.loc["F2", "measured"]
    assert (
        "AnB(n = 7) - AnB(n = 1) = -8.5 pts" in f.loc["F2", "paper"]
    )  # the same contrast on the paper's table
    assert "+2.1 for n >= 5" in f.loc["F7", "paper"]


def test_findings_can_fail_and_can_be_inconclusive(tmp_path):
    # AnB+ below baseB at every n (no), BnB exactly flat (the dip: no), everything else as before.
    def contrary(t, n, s):
        if t == "AnB+":
            return base(s) - 0.03 + NOISE[s]
        if t == "BnB":
            return base(s) + 0.01 + NOISE[s]
        return paperlike(t, n, s)

    write_grid(tmp_path / "g", contrary, base_value=base, experiment="contrary")
    f = findings(transfer_data(load_runs(tmp_path), "test_acc")).set_index("id")
    assert f.loc["F6", "holds"] == "no" and f.loc["F7", "holds"] == "no" and f.loc["F3", "holds"] == "no"
    assert f.loc["F5", "holds"] == "yes"

    # One replicate: no CI, so nothing is decided, but the point estimate is reported.
    write_grid(tmp_path / "one", paperlike, base_value=base, experiment="single", split_seeds=(0,))
    single = findings(transfer_data(load_runs(tmp_path / "one"), "test_acc")).set_index("id")
    assert set(single.loc[~single.index.isin(["F8", "U"]), "holds"]) == {"inconclusive"}
    assert "no CI" in single.loc["F2", "measured"] and "agrees" in single.loc["F2", "why"]
    assert (
        ci_table(transfer_data(load_runs(tmp_path / "one"), "test_acc"), numeric=True)["note"]
        .eq("1 replicate: no CI")
        .all()
    )


def test_experiments_stay_apart_and_dissimilar_split_is_compared(grid):
    def dissimilar(t, n, s):  # the drop at the top n is 3x the similar one
        return base(s) - 0.15 + NOISE[s] if (t, n) == ("AnB", 4) else paperlike(t, n, s)

    write_grid(
        grid / "dis",
        dissimilar,
        base_value=base,
        experiment="paperlike",
        split="mnist_dissimilar",
        b_domain="invert",
    )
    write_grid(grid / "other", lambda t, n, s: 0.5, base_value=0.5, experiment="other")
    td = transfer_data(load_runs(grid), "test_acc")
    assert len(td.groups) == 3
    table = ci_table(td, numeric=True)
    means = table[(table["treatment"] == "AnB") & (table["n"] == 4)].set_index("group")["mean"]
    assert sorted(round(m, 1) for m in means) == [50.0, 75.1, 85.1]  # never averaged across experiments
    f = findings(td)
    similar = f[
        (f["id"] == "F8") & f["group"].str.contains("random_half") & f["group"].str.startswith("paperlike")
    ]
    assert similar["holds"].item() == "yes" and "ratio 3.0x" in similar["measured"].item()
    assert f[(f["id"] == "F8") & f["group"].str.startswith("other")]["holds"].item() == "not measured"


def test_left_out_runs_are_counted(grid):
    write_record(
        grid / "grid" / "crashed",
        fake_record(experiment="paperlike", status="failed", value=None, split_seed=9, n=2, treatment="AnB"),
    )
    write_record(
        grid / "grid" / "nan",
        fake_record(experiment="paperlike", value=float("nan"), split_seed=9, n=3, treatment="AnB"),
    )
    td = transfer_data(load_runs(grid), "test_acc")
    assert td.selection.text() == "used 60 of 62 runs; left out: 1 NaN metric, 1 failed"
    assert ci_table(td, numeric=True)["runs"].sum() == 60 + 3  # runs + the 3 bases


def test_metric_caveat_when_best_k_covers_every_epoch(grid):
    td = transfer_data(load_runs(grid))
    assert td.metric == "test_acc_best_val_k"
    assert any("k >= epochs" in note for note in td.notes[td.groups[0]])
    assert not transfer_data(load_runs(grid), "test_acc").notes[td.groups[0]]
    with pytest.raises(ValueError, match="metric"):
        transfer_data(load_runs(grid), "val_loss")


def test_layer_sets_follow_the_paper():
    assert middle(8) == [3, 4, 5] and upper(8) == [4, 5, 6, 7]  # the paper's dip at 3-5
    assert middle(5) == [2, 3] and upper(5) == [3, 4]


def test_paper_reference():
    ref = paper.load_reference()
    assert len(ref) == 29 and ref.loc[ref["treatment"] == "baseB", "top1"].item() == 62.5
    shared = paper.reference_path()
    embedded = pd.read_csv(__import__("io").StringIO(paper._CSV), comment="#")
    if shared is not None:  # the copy kept in the package must be the shared file, number for number
        pd.testing.assert_frame_equal(pd.read_csv(shared, comment="#"), embedded)
    pd.testing.assert_frame_equal(paper.load_reference(), embedded)


def test_side_by_side_keeps_each_source_at_its_own_n(grid):
    td = transfer_data(load_runs(grid), "test_acc")
    long = side_by_side(td)
    assert set(long.loc[long["source"] == "paper", "n"]) == set(range(8))
    assert set(long.loc[long["source"] == td.groups[0], "n"]) == set(range(5))
    wide = side_by_side_wide(long, td.groups[0]).set_index("treatment")
    assert wide.loc["AnB", "paper n=7"] == pytest.approx(54.3 - 62.5)
    assert "here n=5" not in wide.columns and "paper n=7" in wide.columns
    assert wide.loc["AnB", "here n=4"] == pytest.approx(td_delta(td, "AnB", 4))
    assert math.isnan(wide.loc["random", "paper n=1"])


def td_delta(td, treatment, n):
    t = ci_table(td, numeric=True)
    return t[(t["treatment"] == treatment) & (t["n"] == n)]["delta"].item()


def test_a_whole_ci_below_zero_is_no_even_when_each_n_alone_is_inconclusive(tmp_path):
    # AnB+ - baseB per replicate and n: -1 on average over n in every replicate (a tight CI below 0), but at each
    # n alone the replicates swing by +-3 points (every per-n CI contains 0). "Above baseB at every n" is then
    # false for sure: the mean over n of a difference that is positive at every n cannot be negative.
    swing = {0: (3, -3, 3, -3), 1: (-3, 3, -3, 3), 2: (3, -3, -3, 3)}
    jitter = {0: 0.0, 1: 0.1, 2: -0.1}

    def worse(t, n, s):
        if t == "AnB+":
            return base(s) + (-1.0 + swing[s][n - 1] + jitter[s]) / 100
        return paperlike(t, n, s)

    write_grid(tmp_path / "g", worse, base_value=base, experiment="worse")
    f = findings(transfer_data(load_runs(tmp_path), "test_acc")).set_index("id")
    assert f.loc["F6", "d_hi"] < 0 and f.loc["F6", "holds"] == "no"
    assert "whole CI is below 0" in f.loc["F6", "why"] and "per n:" in f.loc["F6", "measured"]
    assert f.loc["F7", "holds"] == "no"  # the upper half: also a whole CI below 0


def test_ci_table_is_the_papers_view(grid):
    td = transfer_data(load_runs(grid), "test_acc")
    view = ci_table(td)
    numbers = ci_table(td, numeric=True).set_index(["treatment", "n"])
    assert list(view.index) == ["baseB", "BnB", "BnB+", "AnB", "AnB+", "random"]
    assert list(view.columns) == [0, 1, 2, 3, 4] and view.columns.name == "n"
    row = numbers.loc[("AnB", 4)]
    assert view.loc["AnB", 4] == f"{row['mean']:.1f} ± {row['ci_half']:.1f}"
    assert view.loc["baseB", 0].count("±") == 1 and view.loc["baseB", 1] == "" and view.loc["AnB", 0] == ""
    assert view.map(lambda v: isinstance(v, str)).all().all()  # strings only: no NaN anywhere
    assert td.groups[0] not in view.to_string()  # the group name is not repeated on every row
    # several experiments: (group, treatment), each group named once in the display
    write_grid(grid / "other", lambda t, n, s: 0.5, base_value=0.5, experiment="other", split_seeds=(0,))
    both = ci_table(transfer_data(load_runs(grid), "test_acc"))
    assert both.index.names == ["group", "treatment"] and len(both.index.levels[0]) == 2
    other = next(g for g in both.index.levels[0] if g.startswith("other"))
    assert both.loc[(other, "AnB"), 1] == "50.0 (no CI)"


def test_accuracy_intervals_stay_inside_0_and_100(tmp_path):
    # Two replicates: t(0.975, 1) = 12.7, so random layers at 2 % and 12 % get a t-interval far below 0 %.
    def spread(t, n, s):
        return (0.02 + 0.1 * s) if t == "random" else 0.995 + 0.004 * s

    write_grid(tmp_path / "g", spread, base_value=lambda s: 0.99 + 0.008 * s, split_seeds=(0, 1))
    table = ci_table(transfer_data(load_runs(tmp_path), "test_acc"), numeric=True)
    assert (table["ci_lo"] >= 0).all() and (table["ci_hi"] <= 100).all()
    rnd = table[table["treatment"] == "random"].iloc[0]
    assert rnd["ci_lo"] == 0 and rnd["mean"] - rnd["ci_half"] < -50  # the raw t-interval would say -57 %
    assert "clipped to [0, 100]" in rnd["note"]
    top = table[table["treatment"] == "BnB"].iloc[0]
    assert top["ci_hi"] == 100 and "clipped" in top["note"]
    line = baseb_line(transfer_data(load_runs(tmp_path), "test_acc")).iloc[0]
    assert line["ci_hi"] == 100 and "clipped" in line["note"]
    view = ci_table(transfer_data(load_runs(tmp_path), "test_acc"))  # a clipped interval shows its two sides
    assert view.loc["random", 1] == f"{rnd['mean']:.1f} +{rnd['ci_hi'] - rnd['mean']:.1f}/-{rnd['mean']:.1f}"
    assert "±" not in view.loc["BnB", 1] and view.loc["BnB", 1].split("+")[1].startswith(
        f"{100 - top['mean']:.1f}"
    )


def test_undertrained_bases_are_flagged(tmp_path):
    # baseB of split 1 says it was still rising at its end; BnB+ beats baseB by 3 points at n = 2 only.
    def bnb_plus_high(t, n, s):
        return base(s) + (0.03 if (t, n) == ("BnB+", 2) else 0.0) + NOISE[s]

    for s in (0, 1, 2):
        write_grid(
            tmp_path / f"g{s}",
            bnb_plus_high,
            base_value=base,
            experiment="short",
            split_seeds=(s,),
            base_still_rising=s == 1,
        )
    td = transfer_data(load_runs(tmp_path), "test_acc")
    flags = undertrained(td)
    rising = flags[flags["flag"] == "still rising"]
    assert len(rising) == 1 and rising["role"].item() == "baseB" and "epoch 3 of 3" in rising["detail"].item()
    above = flags[flags["flag"] == "BnB+ above baseB"]
    assert above["n"].tolist() == [2] and (above["d_lo"] > 0).all()
    u = findings(td).set_index("id").loc["U"]
    assert u["holds"] == "no" and u["why"].startswith("undertrained bases: 1 base(s) still rising")
    assert "BnB+ above baseB beyond its CI at n = 2" in u["why"]


def test_old_records_cannot_say_whether_bases_converged(tmp_path):
    write_grid(tmp_path / "g", paperlike, base_value=base, experiment="old", old=True)
    td = transfer_data(load_runs(tmp_path), "test_acc")
    assert td.base_info["still_rising"].isna().all()
    u = findings(td).set_index("id").loc["U"]
    assert u["holds"] == "inconclusive" and "do not say whether they were still rising" in u["why"]
