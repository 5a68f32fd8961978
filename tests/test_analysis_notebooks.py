"""The notebooks in analysis/notebooks/ are stored without outputs and run top to bottom (nbclient) against
runs the tests make: the transfer grid of test_analysis_report and a real search sweep (a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import REPO
from nbclient import NotebookClient
from test_analysis_report import SHARES_RUNS, build_runs

NOTEBOOKS = REPO / "analysis" / "notebooks"


@pytest.mark.parametrize("name", ["transferability", "search"])
def test_notebooks_are_stored_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert any("parameters" in c.metadata.get("tags", []) for c in code)


def execute(name: str, env: dict, monkeypatch, tmp_path: Path) -> nbformat.NotebookNode:
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))  # the kernel inherits the environment; the notebook reads it
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    NotebookClient(
        nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    return nb


def outputs(nb) -> tuple[str, int]:
    """All text the notebook printed or displayed, and how many images it showed."""
    text, images = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.output_type != "error", f"{out.get('ename')}: {out.get('evalue')}"
            text.append(out.get("text", ""))
            data = out.get("data", {})
            text.append(data.get("text/plain", ""))
            images += "image/png" in data
    return "\n".join(text), images


@pytest.mark.slow
@SHARES_RUNS
def test_transferability_notebook_runs(tmp_path_factory, monkeypatch, tmp_path):
    root = build_runs(tmp_path_factory)
    monkeypatch.delenv("FREEZELAB_METRIC", raising=False)  # the notebook's own default metric
    nb = execute("transferability", {"FREEZELAB_RESULTS": root}, monkeypatch, tmp_path)
    text, images = outputs(nb)
    assert "used 30 of 32 runs" in text  # the treatments, with the two left out
    assert "metric: metrics.test_acc_best_val_k" in text  # never selected on the test set
    assert "F9" in text and "AnB+" in text and " U " in text  # the findings, the bases check first
    assert "±" in text  # ci_table: the paper's view, mean ± CI
    assert "bases trained to convergence? " in text  # the bases check says what it found, either way
    assert images == 3  # the figure, its relative version, the learning curves


@pytest.mark.slow
def test_search_notebook_runs(tmp_path_factory, monkeypatch, tmp_path):
    root = tmp_path_factory.mktemp("search")
    cmd = [
        sys.executable,
        "-m",
        "harness.train",
        "-m",
        "search=finetune_lr",
        f"paths.output_root={root}",
        "search.n_trials=6",
        "search.pruner.n_startup_trials=2",
        "search.sampler.seed=0",  # the same trials every time
        "data=synthetic",
        "data.noise=0.5",
        "model.channels=[8,8]",
        "model.hidden=[16]",
        "batch_size=32",
        "threads=1",
        "progress=false",
        "checkpoint.save=false",
    ]
    proc = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = root / "search" / "finetune_lr"
    nb = execute("search", {"FREEZELAB_SEARCH": sweep}, monkeypatch, tmp_path)
    text, images = outputs(nb)
    assert "6 trials of study 'finetune_lr'" in text and "pruned:" in text
    assert images == 2  # optimization history, importances
    assert "WARNING: parameter importances from only" in text  # 6 trials: fewer than 10 complete
    assert "COMPLETE" in text and "params.strategy.base_lr" in text  # the trials and the best ones
    assert "metrics.val_acc" in text and "lr_lo" in text  # the trials' own runs (result.json records)
