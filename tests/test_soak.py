"""Long searches in one process keep their memory flat (issue 8): each thing that used to pile up per trial is
released, and ``python -m benchmarks.soak`` measures a real search end to end.

What piled up, and the tests that pin its fix:
- a new Optuna storage (SQLAlchemy engine) per job: the trial hook now reuses one per process and URL;
- a wandb run left active by a job: the next job would log into it; each job now finishes its own run;
- pyplot figures handed to ``analysis.figures.save`` stayed in pyplot's registry; a report leaves no figure.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
from search_helpers import REPO, env

from benchmarks import soak
from harness.search import study as studies
from harness.search import trial_hook
from harness.search.study import ATTR_KEY
from harness.search.trial_hook import TrialHook

# --- the trial hook: one storage per process and URL, not one per job ------------------------------------------


@pytest.fixture
def no_shared_storages():
    """Each test starts and ends with no storage kept by the trial hook (they would outlive their tmp_path)."""

    def clear():
        for storage in trial_hook._storages.values():
            storage.engine.dispose()
        trial_hook._storages.clear()

    clear()
    yield
    clear()


def make_study(tmp_path, name: str = "s", trials: int = 3) -> str:
    url = f"sqlite:///{tmp_path / f'{name}.db'}"
    study = studies.open_study(name, studies.open_storage(url), ["maximize"])
    study.set_user_attr(ATTR_KEY, {"pruner": {"name": "none"}, "objectives": ["val_acc"]})
    for _ in range(trials):
        study.ask()
    return url


def attach(url: str, number: int, name: str = "s") -> TrialHook:
    """A job's trial hook through its whole life: attach, report one epoch, end."""
    hook = TrialHook({"number": number, "study": name, "storage": url})
    run = SimpleNamespace(history=[], plan=SimpleNamespace(total_epochs=9))
    hook.on_run_start(run)
    hook.on_epoch_end(run, {"epoch": 1, "val_acc": 0.5})
    record: dict = {}
    hook.on_run_end(run, record)
    assert record["trial"]["number"] == number and record["trial"]["reported_epochs"] == 1
    return hook


def test_jobs_of_one_process_share_one_storage(tmp_path, monkeypatch, no_shared_storages):
    url = make_study(tmp_path)
    opened = []
    real_open = studies.open_storage
    monkeypatch.setattr(studies, "open_storage", lambda *a, **k: opened.append(a) or real_open(*a, **k))

    hooks = [attach(url, number) for number in range(3)]

    # A storage per job was a new engine and dialect each time, which Optuna's module-level ORM mappers kept
    # in their statement caches: memory grew with every trial of a sweep.
    assert len(opened) == 1
    assert all(h.trial is None for h in hooks)  # nothing of a finished job holds the study any more
    reported = studies.open_study("s", real_open(url), [], create=False).trials
    assert [t.intermediate_values for t in reported] == [{1: 0.5}] * 3


def test_shared_storages_are_bounded_and_evicted_ones_disposed(tmp_path, no_shared_storages):
    urls = [make_study(tmp_path, name=f"s{i}", trials=1) for i in range(trial_hook.KEEP_STORAGES + 2)]
    first = trial_hook.shared_storage(urls[0])
    pool = first.engine.pool
    for url in urls[1:]:
        attach(url, 0, name=url.rsplit("/", 1)[-1].removesuffix(".db"))

    assert len(trial_hook._storages) == trial_hook.KEEP_STORAGES
    assert all(key[1] != urls[0] for key in trial_hook._storages)
    assert first.engine.pool is not pool  # disposed: SQLAlchemy replaced its pool, its connections are closed
    assert trial_hook.shared_storage(urls[-1]) is trial_hook.shared_storage(urls[-1])


# --- wandb: every job finishes its own run -----------------------------------------------------------------------


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")
    yield wandb
    if wandb.run is not None:  # a failing test must not leave its run to the next test
        wandb.run.finish()


def wandb_hook(tmp_path, name: str):
    from harness.engine.logger import WandbHook

    return WandbHook({"mode": "offline", "dir": str(tmp_path), "run_name": name}, {"job": name}, name)


def ok_record() -> dict:
    return {"status": "ok", "metrics": {"val_acc": 0.5, "test_acc": None}}


@pytest.mark.slow
def test_wandb_run_is_finished_at_run_end_even_when_the_summary_fails(tmp_path, offline_wandb):
    hook = wandb_hook(tmp_path, "a")
    hook.on_run_start(None)
    hook.on_epoch_end(None, {"epoch": 1, "val_acc": 0.5, "lr": {"head": 1e-3}})
    record = ok_record()
    hook.on_run_end(None, record)
    assert record["wandb"]["mode"] == "offline" and offline_wandb.run is None

    broken = wandb_hook(tmp_path, "b")
    broken.on_run_start(None)
    with pytest.raises(KeyError):
        broken.on_run_end(None, {"status": "ok"})  # a record without metrics: the summary update raises
    assert offline_wandb.run is None and broken.wandb_run is None


@pytest.mark.slow
def test_a_job_never_logs_into_a_run_an_earlier_job_left_active(tmp_path, offline_wandb):
    first = wandb_hook(tmp_path, "first")
    first.on_run_start(None)  # ...and never ends (a hook before it raised in on_run_end)
    left = first.wandb_run

    second = wandb_hook(tmp_path, "second")
    second.on_run_start(None)

    # wandb's default outside notebooks returns the active run: the second job would have logged into the
    # first one's run, with the first one's config, and that run would never be finished.
    assert second.wandb_run is not left and second.wandb_run.id != left.id
    assert left._is_finished  # wandb has no public "finished" flag; this private one is what finish() sets
    run_id, record = second.wandb_run.id, ok_record()
    second.on_run_end(None, record)
    assert record["wandb"]["id"] == run_id and offline_wandb.run is None


# --- figures: a report leaves none behind ------------------------------------------------------------------------


def live_figures() -> int:
    from matplotlib.figure import Figure

    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, Figure))


def test_save_takes_a_pyplot_figure_out_of_pyplots_registry(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis import figures

    plt.close("all")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    paths = figures.save(fig, tmp_path, "line")
    assert paths["png"].is_file() and paths["pdf"].is_file()
    assert plt.get_fignums() == []  # pyplot kept it for the life of the process before


def test_a_report_leaves_no_figure_alive(tmp_path):
    from analysis.report import write_report
    from analysis.synthetic import write_grid

    def pyplot_figures() -> list[int]:
        pyplot = sys.modules.get("matplotlib.pyplot")  # whatever imported it, a report must add nothing to it
        return pyplot.get_fignums() if pyplot else []

    write_grid(tmp_path / "runs", lambda t, n, s: 0.9 - 0.01 * n, experiment="fig", split_seeds=(0, 1))
    before, before_pyplot = live_figures(), pyplot_figures()
    out = write_report(tmp_path / "runs", tmp_path / "report")
    assert list((out / "figures").glob("*.png"))  # it drew some
    assert live_figures() == before  # every figure it drew is garbage once written
    assert pyplot_figures() == before_pyplot


# --- the soak's arithmetic ---------------------------------------------------------------------------------------


def fake_trials(rss, state="COMPLETE"):
    return [
        {"number": i, "state": state, "status": "ok", "rss_mb": r, "peak_rss_mb": r + 1, "seconds": 1.0}
        for i, r in enumerate(rss)
    ]


def test_soak_verdict_reads_the_second_half_slope():
    # Warm-up in the first half (caches filling) does not count; a steady 0.1 MB per trial does.
    warm_then_flat = [100 + 10 * min(i, 5) for i in range(20)]
    summary = soak.summarize(fake_trials(warm_then_flat), 1.0, 0, ["cmd"])
    assert summary["verdict"] == "flat" and summary["slope_mb_per_100_trials"] == pytest.approx(0.0)
    leaking = [100 + 0.2 * i for i in range(200)]
    summary = soak.summarize(fake_trials(leaking), 1.0, 0, ["cmd"])
    assert summary["verdict"] == "grows" and summary["slope_mb_per_100_trials"] == pytest.approx(20.0)
    assert summary["rss_mb_at"] == pytest.approx(
        {"1": 100.0, "10": 101.8, "50": 109.8, "100": 119.8, "200": 139.8}
    )
    assert summary["peak_rss_mb"] == pytest.approx(140.8)
    assert summary["states"] == {"COMPLETE": 200, "PRUNED": 0, "FAIL": 0, "other": 0}
    assert soak.summarize(fake_trials([1.0, 2.0]), 1.0, 0, ["cmd"])["verdict"] == "unknown"


# --- the soak end to end -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_soak_command_runs_a_search_and_writes_its_figures(tmp_path):
    out = tmp_path / "soak.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.soak",
            "--trials",
            "12",
            "--root",
            str(tmp_path / "root"),
            "--out",
            str(out),
        ],
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "verdict:" in proc.stdout and "RSS at trial 1:" in proc.stdout

    doc = json.loads(out.read_text())
    trials, summary = doc["trials"], doc["summary"]
    assert [t["number"] for t in trials] == list(range(12))
    assert all(t["rss_mb"] > 0 and t["peak_rss_mb"] > 0 for t in trials)
    assert all(t["state"] in ("COMPLETE", "PRUNED") for t in trials)
    assert sum(summary["states"].values()) == 12 and summary["states"]["FAIL"] == 0
    assert set(summary["rss_mb_at"]) == {"1", "10", "12"}
    assert summary["slope_mb_per_100_trials"] is not None and summary["verdict"] in ("flat", "grows")
    assert summary["peak_rss_mb"] == max(t["peak_rss_mb"] for t in trials)
    # Generous on purpose (a 2-core CI machine, 12 trials, caches still warming): between trial 2 and 12 RSS
    # rises by ~10 MB here. 100 MB would mean something keeps most of every run (its model, data or logger).
    assert trials[-1]["rss_mb"] - trials[1]["rss_mb"] < 100
    # Every trial logged to wandb offline and finished its run (the record's wandb section is written then).
    records = [
        json.loads(p.read_text()) for p in (tmp_path / "root" / "search" / "soak").glob("trial_*/result.json")
    ]
    assert len(records) == 12 and all(r.get("wandb", {}).get("mode") == "offline" for r in records)
