"""``python -m analysis.report`` on real runs the tests train (tiny synthetic data): the files it writes, what
report.md says, escaping, bad input, and the Hydra callback that writes it when a grid ends."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, compose_config
from omegaconf import OmegaConf

from analysis.callbacks import WriteReport
from analysis.load import load_runs
from analysis.report import main, write_report
from analysis.synthetic import fake_record, write_grid, write_record

# A transfer grid small enough for seconds: 4 layer groups (n = 1..3), two epochs, two split seeds.
TINY_GRID = [
    "experiment=transferability_quick",
    "data=synthetic",
    "data.per_class=30",
    "model.channels=[8,8]",
    "model.hidden=[16]",
    "epochs=2",
    "transfer.base_epochs=null",  # a fixed 2 epochs, not the convergence rule: seconds, not minutes
    "transfer.epochs=null",
    "progress=false",
    "threads=1",
    "checkpoint.save=false",
]
_BUILT: dict[str, Path] = {}
# build_runs trains once per process: its users (here and the transferability notebook) share one worker
SHARES_RUNS = pytest.mark.xdist_group("analysis_runs")
pytestmark = SHARES_RUNS


def build_runs(tmp_path_factory) -> Path:
    """Trained once per test session (the notebook tests read the same runs): a transfer grid, three strategies
    x two seeds, a run that diverges (failed), a record of an older schema and a job that never wrote one."""
    if "root" in _BUILT:
        return _BUILT["root"]
    from harness.train import train

    root = tmp_path_factory.mktemp("analysis_runs")
    grid = compose_config(TINY_GRID, tiny=False, root=root)  # composed once: composing costs as much as a job
    job = 0
    for split_seed in (0, 1):
        for treatment in ("BnB", "BnB+", "AnB", "AnB+", "random"):
            for n in (1, 2, 3):
                cfg = copy.deepcopy(grid)
                cfg.transfer.treatment, cfg.transfer.n, cfg.split.seed = treatment, n, split_seed
                train(cfg, root / "grid" / f"{job}_{treatment}_n{n}_split{split_seed}")
                job += 1
    for strategy in ("never", "head_only", "full_unfreeze"):
        plain = compose_config(
            [
                f"strategy={strategy}",
                "epochs=3",
                "checkpoint.save=false",
                "data.per_class=30",
                "experiment_name=strategies",
            ],
            root=root,
        )
        for seed in (0, 1):
            cfg = copy.deepcopy(plain)
            cfg.seed = seed
            train(cfg, root / "strategies" / f"{strategy}_seed{seed}")
    cfg = compose_config(
        ["lr=1e8", "checkpoint.save=false", "data.per_class=30", "experiment_name=strategies"], root=root
    )
    assert train(cfg, root / "strategies" / "diverged")["status"] == "failed"
    old = json.loads(next((root / "grid").glob("0_*/result.json")).read_text())
    old["version"], old["run_id"] = 0, "0ld5c4e3a0000000"  # a run of an older harness (its own identity)
    write_record(root / "grid" / "old_schema", old)
    (root / "grid" / "died" / ".hydra").mkdir(parents=True)  # a job killed before it wrote its record
    (root / "grid" / "died" / ".hydra" / "config.yaml").write_text(
        "experiment_name: transferability_quick\ndata:\n  name: synthetic\nmodel:\n  name: convnet\nsplit:\n"
        "  name: random_half\n  seed: 0\ntransfer:\n  treatment: AnB\n  n: 2\n"
        "  cache_dir: ${paths.output_root}/bases\n"
    )
    started = {"run_id": "d1ed0000d1ed0000", "experiment": "transferability_quick", "started": "x", "pid": 1}
    (root / "grid" / "died" / "started.json").write_text(json.dumps(started))  # the job began its run
    (root / "grid" / "phantom" / ".hydra").mkdir(parents=True)  # a config error that exited 2: no run began
    (root / "grid" / "phantom" / ".hydra" / "config.yaml").write_text(
        "experiment_name: transferability_quick\n"
    )
    _BUILT["root"] = root
    return root


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    return build_runs(tmp_path_factory)


@pytest.fixture(scope="module")
def report(runs_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return write_report(runs_root, out, command="pytest")


@pytest.mark.slow
def test_report_files(report):
    md = (report / "report.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", md)
    assert links and all((report / link).is_file() for link in links), "every link of report.md resolves"
    pngs = sorted(report.glob("figures/*.png"))
    kinds = [p.name.split("_")[0] + "_" + p.name.split("_")[1] for p in pngs]
    # transfer: measured+paper, relative, CKA; strategies: time, curves, lr; per strategy: phase map + heatmap
    assert sorted(k for k in kinds if k.startswith("transfer_")) == [
        "transfer_cka",
        "transfer_relative",
        "transfer_transferability",
    ]
    assert sorted(k for k in kinds if k.startswith("strategies_")) == [
        "strategies_curves",
        "strategies_lr",
        "strategies_time",
    ]
    assert kinds.count("phase_map") == kinds.count("weight_change") >= 2
    for png in pngs:
        assert png.with_suffix(".pdf").is_file() and png.stat().st_size > 10_000
        assert f"figures/{png.name}" in links
    for csv in report.glob("tables/*.csv"):
        tex = csv.with_suffix(".tex").read_text()
        assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    prov = json.loads((report / "provenance.json").read_text())
    assert prov["report"]["command"] == "pytest" and prov["report"]["analysis"]["git_commit"]
    assert prov["runs"]["split_seeds"] == [0, 1] and prov["runs"]["harness_git_commit"]
    assert list(report.glob("configs/*.yaml"))


@pytest.mark.slow
def test_report_says_what_it_used_and_left_out(report):
    md = (report / "report.md").read_text()
    assert "## Transferability: transferability\\_quick · synthetic/convnet · random\\_half" in md
    # 30 treatments used; the old-schema record and the job without a record are left out, with their reasons
    assert (
        "used 30 of 32 runs; left out: 1 no record (job died or still running), 1 other schema version" in md
    )
    assert "Findings check" in md and "| F1 |" in md and "| F9 |" in md
    assert "## Strategy comparison: strategies · synthetic/convnet" in md
    assert "used 6 of 7 runs; left out: 1 failed" in md
    assert "NumericalError: loss is nan" in md
    assert "## Provenance" in md and "split seeds: [0, 1]" in md
    assert "phantom" not in md  # a folder with neither a record nor started.json is not a run
    assert "Metric: `metrics.test_acc_best_val_k`" in md and "test_acc_best_k" not in md
    assert "| U |" in md.split("| F1 |")[0]  # the bases check comes first
    assert "| treatment | n = 0 | n = 1 | n = 2 | n = 3 |" in md  # the paper's view: treatment x n, mean ± CI
    assert "±" in md
    findings = (report / "tables").glob("transfer_findings_transferability*.csv")
    holds = set().union(*(set(__import__("pandas").read_csv(f)["holds"]) for f in findings))
    assert holds <= {"yes", "no", "inconclusive", "not measured"}


@pytest.mark.slow
def test_report_figures_have_the_right_panels(runs_root):
    from analysis import figures
    from analysis.transferability import transfer_data

    td = transfer_data(load_runs(runs_root))
    fig = figures.transferability_figure(td, td.groups[0])
    left, right = fig.axes[:2]
    assert left.get_xlabel().endswith("L = 4)") and right.get_xlabel().endswith("L = 8)")
    assert [t.get_text() for t in left.get_xticklabels()] == ["1", "2", "3"]
    assert "(%)" in left.get_ylabel() and "95% CI over 2 replicates" in left.get_title(loc="left")
    assert len(left.collections) >= 5  # a CI band per treatment (and baseB's)


def test_text_from_configs_is_escaped(tmp_path):
    name = "we|rd_*name*<b>&%$#"
    write_grid(tmp_path / "g", lambda t, n, s: 0.9, experiment=name, split_seeds=(0, 1))
    # A failure reason is text from a run (an exception message may quote a config value): a table cell too.
    hostile = "boom | <script>alert(1)</script> [link](javascript:x)\n# not a heading"
    failed = fake_record(status="failed", value=None, n=9, experiment=name)
    write_record(tmp_path / "g" / "failed", {**failed, "reason": hostile})
    out = write_report(tmp_path, tmp_path / "rep")
    md = (out / "report.md").read_text()
    assert "we\\|rd\\_\\*name\\*\\<b\\>&%$\\#" in md and "<b>" not in md
    assert "boom \\| \\<script\\>alert(1)\\</script\\> \\[link\\](javascript:x) \\# not a heading" in md
    assert "<script>" not in md and "\n# not a heading" not in md
    lines = md.splitlines()
    row = next(i for i, line in enumerate(lines) if "boom" in line)
    start = row
    while lines[start - 1].startswith("|"):
        start -= 1
    table = lines[start : row + 1]  # the left-out table: the row with the reason keeps its column count
    assert len({len(re.findall(r"(?<!\\)\|", line)) for line in table}) == 1, table
    tex = next((out / "tables").glob("transfer_ci_*.tex")).read_text()
    assert r"we|rd\_*name*\textless{}b\textgreater{}\&\%\$\#" in tex  # in the caption


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    assert "no result.json below" in capsys.readouterr().err
    assert main([str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_never_deletes_a_folder_that_is_not_a_report(tmp_path, capsys):
    write_record(tmp_path / "runs" / "a", fake_record())
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "mine")]) == 2
    assert "holds no earlier report" in capsys.readouterr().err
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"
    first = write_report(tmp_path / "runs")
    (first / "figures" / "stale.png").write_text("old")
    assert not (
        write_report(tmp_path / "runs") / "figures" / "stale.png"
    ).exists()  # an old report is replaced


def test_report_of_only_failed_runs_still_writes(tmp_path):
    write_record(tmp_path / "a", fake_record(status="failed", value=None))
    out = write_report(tmp_path)
    assert out == tmp_path / "report"
    assert "No usable treatment runs: used 0 of 1 runs; left out: 1 failed" in (out / "report.md").read_text()


def test_callback_failure_does_not_fail_the_grid(tmp_path, capsys):
    cfg = OmegaConf.create(
        {"hydra": {"sweep": {"dir": str(tmp_path / "nothing")}, "overrides": {"task": []}}}
    )
    WriteReport().on_multirun_end(cfg)  # must not raise
    err = capsys.readouterr().err
    assert "the grid finished, but its report could not be written" in err
    assert f"python -m analysis.report {tmp_path / 'nothing'}" in err


@pytest.mark.slow
def test_grid_writes_its_report_when_it_ends(tmp_path):
    """The real command line: the callback in conf/experiment/transferability_quick.yaml writes the report."""
    cmd = [
        sys.executable,
        "-m",
        "harness.train",
        "-m",
        *TINY_GRID,
        "transfer.treatment=BnB,AnB",
        "transfer.n=1,3",
        f"paths.output_root={tmp_path}",
    ]
    proc = subprocess.run(
        cmd,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "analysis: report written to" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    (sweep,) = (tmp_path / "transferability_quick").iterdir()
    md = (sweep / "report" / "report.md").read_text()
    assert "used 4 of 4 runs" in md and "python -m harness.train -m" in md
    assert (sweep / "multirun.yaml").is_file()


def test_a_report_that_fails_midway_leaves_the_earlier_one_whole(tmp_path, monkeypatch):
    import analysis.report as report_module

    write_record(tmp_path / "runs" / "a", fake_record())
    first = write_report(tmp_path / "runs")
    before = sorted(p.relative_to(first) for p in first.rglob("*"))
    text = (first / "report.md").read_text()

    def broken(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report_module, "_provenance", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_report(tmp_path / "runs")
    assert sorted(p.relative_to(first) for p in first.rglob("*")) == before
    assert (first / "report.md").read_text() == text
    assert not [p for p in (tmp_path / "runs").iterdir() if p.name.startswith(".report")]  # no half report


def test_undertrained_bases_are_the_first_thing_a_report_says(tmp_path):
    def value(t, n, s):  # BnB+ 3 points above a baseB that was still rising when it stopped
        return 0.93 + 0.002 * s if t == "BnB+" else 0.90 + 0.002 * s

    write_grid(tmp_path / "g", value, base_value=lambda s: 0.90 + 0.001 * s, base_still_rising=True)
    md = (write_report(tmp_path / "g", tmp_path / "rep") / "report.md").read_text()
    top = md.split("## Runs found")[0]
    assert "**Warning: undertrained bases: 3 base(s) still rising at their end" in top
    assert "BnB+ above baseB beyond its CI at n = 1, 2, 3, 4" in top
    assert "best validation accuracy at epoch 3 of 3" in top  # each base listed
    findings = next((tmp_path / "rep" / "tables").glob("transfer_findings_fake*.csv")).read_text()
    assert "undertrained bases" in findings

    write_grid(tmp_path / "fine", lambda t, n, s: 0.9 + 0.002 * s, experiment="fine")
    md = (write_report(tmp_path / "fine", tmp_path / "rep2") / "report.md").read_text()
    assert "Warning: undertrained" not in md and "| U | Bases trained to convergence" in md
