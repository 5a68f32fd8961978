"""The transferability figure stays inside the physics (bands within what an accuracy can be), its legend lists
only what the data has, and AnB+ and BnB+ can be told apart. Synthetic records, no training."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
from matplotlib.colors import to_rgb

from analysis import figures
from analysis.load import load_runs
from analysis.synthetic import write_grid
from analysis.transferability import ci_table, transfer_data


def _band_ys(ax) -> np.ndarray:
    """Every y of every filled band (fill_between) of an axis."""
    ys = [p.vertices[:, 1] for c in ax.collections for p in c.get_paths() if len(p.vertices)]
    return np.concatenate(ys) if ys else np.array([])


def _legend(fig) -> list[str]:
    return [t.get_text() for t in fig.legends[0].get_texts()]


@pytest.fixture
def two_replicates(tmp_path):
    # Two replicates, t(0.975, 1) = 12.7: random at 2 % and 12 % has a t-interval from -57 % to +71 %; the
    # others sit near 100 %, where their intervals pass 100 %.
    def value(t, n, s):
        return (0.02 + 0.1 * s) if t == "random" else 0.97 + 0.02 * s

    write_grid(tmp_path, value, base_value=lambda s: 0.975 + 0.02 * s, split_seeds=(0, 1))
    return transfer_data(load_runs(tmp_path), "test_acc")


def test_bands_are_clipped_to_what_an_accuracy_can_be(two_replicates):
    td = two_replicates
    raw = ci_table(td, numeric=True)
    assert (raw["mean"] - raw["ci_half"]).min() < -50 and (raw["mean"] + raw["ci_half"]).max() > 100
    fig = figures.transferability_figure(td, td.groups[0], panels=("measured", "relative"))
    measured, relative = fig.axes[:2]
    ys = _band_ys(measured)
    assert len(ys) and ys.min() >= 0 and ys.max() <= 100
    assert measured.get_ylim()[1] <= 102 and measured.get_ylim()[0] >= -2
    base = raw.loc[raw["treatment"] == "baseB", "mean"].item()
    ys = _band_ys(relative)
    assert ys.min() >= -base - 1e-9 and ys.max() <= 100 - base + 1e-9
    assert any("clipped to [0, 100] %" in label for label in _legend(fig))


def test_the_legend_lists_only_the_treatments_the_data_has(tmp_path):
    write_grid(tmp_path, lambda t, n, s: 0.9 + 0.002 * s, treatments=("BnB", "AnB"), split_seeds=(0, 1, 2))
    td = transfer_data(load_runs(tmp_path), "test_acc")
    fig = figures.transferability_figure(td, td.groups[0])  # measured + the paper's panel
    labels = _legend(fig)
    assert [x for x in labels if x in ("BnB", "BnB+", "AnB", "AnB+", "random")] == ["BnB", "AnB"]
    paper = fig.axes[1]
    assert sorted(line.get_label() for line in paper.get_lines() if not line.get_label().startswith("_")) == [
        "AnB",
        "BnB",
    ]

    # One replicate: no interval, no replicate dots, so neither is in the legend.
    write_grid(
        tmp_path / "one", lambda t, n, s: 0.9, treatments=("AnB+",), split_seeds=(0,), experiment="one"
    )
    td = transfer_data(load_runs(tmp_path / "one"), "test_acc")
    labels = _legend(figures.transferability_figure(td, td.groups[0]))
    assert labels == ["AnB+", "baseB (trained on B from scratch)"]


def test_anb_plus_and_bnb_plus_are_told_apart(two_replicates):
    td = two_replicates
    fig = figures.transferability_figure(td, td.groups[0], panels=("measured",))
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    a, b = lines["AnB+"], lines["BnB+"]
    ca, cb = to_rgb(a.get_color()), to_rgb(b.get_color())
    hue_gap = abs(colorsys.rgb_to_hsv(*ca)[0] - colorsys.rgb_to_hsv(*cb)[0])
    assert min(hue_gap, 1 - hue_gap) > 0.25  # different hues, not two pale tints
    assert np.linalg.norm(np.subtract(ca, cb)) > 0.5
    assert a.get_marker() != b.get_marker()
    # fine-tuned copies are hollow, their frozen counterparts filled: a second cue besides colour
    assert to_rgb(a.get_markerfacecolor()) == (1.0, 1.0, 1.0) == to_rgb(b.get_markerfacecolor())
    assert to_rgb(lines["AnB"].get_markerfacecolor()) != (1.0, 1.0, 1.0)
    for line in (a, b):  # and neither fades into the black baseB line
        assert np.linalg.norm(to_rgb(line.get_color())) > 0.5
