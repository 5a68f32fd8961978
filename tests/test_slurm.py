"""The cluster path for real: grids and searches through ``launcher=slurm`` on a one-node SLURM cluster that
the tests start themselves (tests/slurm_cluster.py: munge, mariadb + slurmdbd, slurmctld, slurmd on
loopback), with a shared PostgreSQL study (tests/test_search_postgres.py's server), and the faults a
cluster causes: ``scancel``, preemption with requeue, a node that dies.

Every job is a real sbatch submission by hydra-submitit-launcher; states are read back from SLURM's own
accounting (``sacct``). Where the Debian packages are missing the tests fail and say what to install.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState
from search_helpers import REPO, TINY_DATA, TINY_MODEL, env, load_study, result_of
from slurm_cluster import INSTALL_HINT, PARTITION, ClusterError, SlurmCluster, missing_binaries
from test_search_postgres import postgres_url  # noqa: F401 (the module-scoped server fixture)

from harness.engine import checkpoint

# one xdist worker runs them all: they share one module-scoped cluster
pytestmark = [pytest.mark.slow, pytest.mark.slurm, pytest.mark.xdist_group("slurm")]

# The launcher config as a user on a CPU partition would shrink it: one CPU per job, no GPU, no memory
# request (the node tracks CPUs only). timeout_min 60: submitit counts a signal in the last 10 minutes
# (or 20 %) of the time limit as a timeout, any earlier one as a preemption.
LAUNCH = [
    "launcher=slurm",
    f"hydra.launcher.partition={PARTITION}",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.gpus_per_node=null",
    "hydra.launcher.mem_gb=null",
    "hydra.launcher.timeout_min=60",
    "hydra.launcher.signal_delay_s=60",
]
# A run of 8 epochs of about a second each: long enough for a fault to land in the middle of it.
SLOW_RUN = [
    "data=synthetic",
    "data.per_class=300",
    "data.image_size=16",
    "data.noise=3",
    "batch_size=32",
    "threads=1",
    "progress=true",  # epoch lines in the job's log (plain lines: not a terminal)
    "diagnostics.weights=false",
    *TINY_MODEL,
]
SEARCH_SLOW = [*SLOW_RUN, "strategy.freeze_epochs=1", "strategy.epochs=15", "strategy.lr_mult=10"]


@pytest.fixture(scope="module")
def cluster():
    if missing_binaries():
        pytest.fail(f"{', '.join(missing_binaries())} not found. {INSTALL_HINT}", pytrace=False)
    try:
        c = SlurmCluster(slurmd_timeout=30).start()
    except ClusterError as e:
        pytest.fail(str(e), pytrace=False)
    yield c
    c.stop()


def harness_command(*overrides: str) -> list[str]:
    return [sys.executable, "-m", "harness.train", "-m", *overrides]


def start(cluster: SlurmCluster, log: Path, *overrides: str) -> subprocess.Popen:
    out = open(log, "w")
    proc = subprocess.Popen(
        harness_command(*LAUNCH, *overrides),
        cwd=REPO,
        env={**env(), **cluster.env},
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out.close()
    return proc


def finish(proc: subprocess.Popen, log: Path, timeout: float = 240) -> str:
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"the sweep did not end in {timeout} s:\n{log.read_text()[-4000:]}") from None
    text = log.read_text()
    assert code == 0, text[-4000:]
    return text


def wait_for(what: str, ready, timeout: float = 120, log: Path | None = None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = ready()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}" + (f":\n{log.read_text()[-3000:]}" if log else ""))


def running_job(cluster: SlurmCluster) -> str | None:
    """The id of the one running job, as scancel takes it (12_0 for an array task)."""
    out = cluster.run("squeue", "-h", "-t", "R", "-o", "%i").stdout.split()
    return out[0] if len(out) == 1 else None


def job_state(cluster: SlurmCluster, job: str) -> str:
    return cluster.run("squeue", "-h", "-j", job, "-o", "%T", check=False).stdout.strip()


def checkpoint_epochs(store: Path) -> int:
    """Epochs done in the newest checkpoint of a run store (0 while there is none)."""
    files = sorted(store.glob("*/last.pt"), key=lambda p: p.stat().st_mtime)
    try:
        return int(checkpoint.load(files[-1])["epochs_done"]) if files else 0
    except Exception:  # being replaced right now: ask again
        return 0


def job_logs(sweep: Path) -> dict[str, str]:
    """submitit's log of every job under a sweep folder, by SLURM job id."""
    return {p.parent.name: p.read_text() for p in sweep.rglob(".submitit/*/*_log.out")}


def accounting(cluster: SlurmCluster, since: set[str]) -> dict[str, str]:
    """{job id: state} of the jobs submitted since ``since`` was taken, once they all ended (a sweep returns
    when a job's result is written; the job itself may still be exiting)."""

    def ended() -> dict[str, str] | None:
        jobs = {j["JobID"]: j["State"] for j in cluster.jobs() if j["JobID"] not in since}
        busy = ("RUNNING", "PENDING", "COMPLETING", "REQUEUED")
        return None if any(state.startswith(busy) for state in jobs.values()) else jobs

    return wait_for("the jobs to end in the accounting", ended, 60)


def history(record: dict) -> list[tuple]:
    return [
        (h["epoch"], h["train_loss"], h["val_loss"], h["val_acc"], h["test_acc"]) for h in record["history"]
    ]


# --------------------------------------------------------------------------------------------------- grid


def test_transferability_grid_runs_as_slurm_jobs_and_trains_each_base_once(cluster, tmp_path):
    before = {j["JobID"] for j in cluster.jobs()}
    out = tmp_path / "outputs"
    log = tmp_path / "grid.log"
    proc = start(
        cluster,
        log,
        "experiment=transferability_quick",
        *TINY_DATA,
        "model.channels=[8,8,8]",
        "model.hidden=[16]",
        "epochs=2",
        "transfer.base_epochs=null",
        "transfer.epochs=null",
        "diagnostics.cka=false",
        "transfer.treatment=AnB,BnB+",
        "transfer.n=1,2",
        f"paths.output_root={out}",
    )
    finish(proc, log)
    [sweep] = (out / "transferability_quick").iterdir()
    records = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/result.json")}
    assert {name.split("_", 1)[1] for name in records} == {
        "AnB_n1_split0",
        "AnB_n2_split0",
        "BnB+_n1_split0",
        "BnB+_n2_split0",
    }
    assert all(r["status"] == "ok" for r in records.values()), {k: r["reason"] for k, r in records.items()}
    jobs = accounting(cluster, before)
    print(f"grid jobs: {jobs}")
    assert len(jobs) == 4 and set(jobs.values()) == {"COMPLETED"}, jobs  # each job is one SLURM job
    logs = job_logs(sweep)
    assert sorted(logs) == sorted(jobs)  # one submitit folder per SLURM job, none lost or doubled
    # The shared base cache: baseA and baseB trained once across the four jobs, on whichever node got there.
    assert sum(r["transfer"]["bases_trained_by_this_job"] for r in records.values()) == 2
    assert sum(text.count("base cache: training base") for text in logs.values()) == 2
    assert len([p for p in (out / "bases").iterdir() if p.is_dir() and not p.name.startswith(".")]) == 2


# ------------------------------------------------------------------------------------------------- search


def readme_cluster_command() -> list[str]:
    """The overrides of the README's cluster command (its block that starts with ``# the cluster command``)."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("# the cluster command\n", 1)[1].split("```", 1)[0]
    words = shlex.split(block.replace("\\\n", " "))
    assert words[:4] == ["python", "-m", "harness.train", "-m"], words
    return words[4:]


def test_readme_cluster_command_runs_trials_as_slurm_jobs_with_pruning_and_best_yaml(
    cluster,
    tmp_path,
    postgres_url,  # noqa: F811
):
    before = {j["JobID"] for j in cluster.jobs()}
    out = tmp_path / "outputs"
    log = tmp_path / "search.log"
    # The README's command as written, with this cluster's partition, sizes, folder and database put in.
    ours = {
        "hydra.launcher.partition": PARTITION,
        "hydra.launcher.timeout_min": "60",
        "hydra.launcher.cpus_per_task": "1",
        "hydra.launcher.gpus_per_node": "null",
        "paths.output_root": str(out),
        "search.storage": postgres_url,
        "search.n_trials": "4",
    }
    command = []
    for word in readme_cluster_command():
        key = word.split("=", 1)[0]
        command.append(f"{key}={ours.pop(key)}" if key in ours else word)
    assert not ours, f"the README's command no longer sets {sorted(ours)}"
    assert command[:2] == ["launcher=slurm", "search=finetune_lr"]
    # A grid in a fixed order: two good rates first, then two that cannot learn, which the median pruner
    # (one finished trial is enough) stops after their first epoch.
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.train", "-m", *command, "hydra.launcher.mem_gb=null"]
        + [
            "search.study_name=slurm_search",
            "search.sampler.name=grid",
            "search.pruner.n_startup_trials=1",
            "hydra.launcher.array_parallelism=2",
            *TINY_DATA,
            *TINY_MODEL,
            "strategy.freeze_epochs=1",
            "strategy.epochs=2",
            "strategy.lr_mult=10",
            "strategy.base_lr=choice(3e-2,1e-1,1e-7,1e-8)",
            "checkpoint.save=false",
        ],
        cwd=REPO,
        env={**env(), **cluster.env},
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    text = finish(proc, log)
    study = load_study(postgres_url, "slurm_search")
    trials = study.trials
    states = {t.number: t.state.name for t in trials}
    print(f"search states: {states}")
    assert len(trials) == 4 and [t.number for t in trials] == [0, 1, 2, 3]
    # Pruning reached the jobs on the node: the two rates that cannot learn were stopped after epoch 1 (of
    # the two good ones, the later may be stopped too when it trails the first).
    assert states[2] == states[3] == "PRUNED", text[-3000:]
    complete = [t.number for t in trials if t.state == TrialState.COMPLETE]
    assert complete and set(complete) <= {0, 1}, states
    sweep = out / "search" / "slurm_search"
    for t in trials:
        record = result_of(t.user_attrs["folder"])
        assert record["config"]["trial"]["number"] == t.number  # exactly one record per trial, its own
        if t.number >= 2:
            assert record["status"] == "pruned" and record["stopped_epoch"] == 1
    jobs = accounting(cluster, before)
    print(f"search jobs: {jobs}")
    assert len(jobs) == 4 and set(jobs.values()) == {"COMPLETED"}, jobs  # one SLURM job per trial
    assert len(job_logs(sweep)) == 4
    best = (sweep / "best.yaml").read_text()
    assert f"trial: {study.best_trial.number}" in best and study.best_trial.number in complete
    assert not (sweep / "study.db").exists()  # the study lives in PostgreSQL


def test_scancel_of_a_running_trial_fails_it_and_retries_it_from_its_checkpoint(
    cluster,
    tmp_path,
    postgres_url,  # noqa: F811
):
    before = {j["JobID"] for j in cluster.jobs()}
    out = tmp_path / "outputs"
    log = tmp_path / "scancel.log"
    proc = start(
        cluster,
        log,
        "search=finetune_lr",
        "search.n_trials=1",
        f"search.storage={postgres_url}",
        "search.study_name=slurm_scancel",
        "search.sampler.name=grid",
        "strategy.base_lr=choice(1e-2,3e-2)",
        *SEARCH_SLOW,
        f"paths.output_root={out}",
    )
    wait_for("trial 0's second checkpoint", lambda: checkpoint_epochs(out / "checkpoints") >= 2, log=log)
    job = wait_for("its running SLURM job", lambda: running_job(cluster), log=log)
    cluster.run("scancel", job)
    text = finish(proc, log)
    trials = load_study(postgres_url, "slurm_scancel").trials
    states = {t.number: t.state.name for t in trials}
    print(f"scancel: job {job} cancelled; states {states}; reason {trials[0].user_attrs.get('reason')!r}")
    assert states == {0: "FAIL", 1: "COMPLETE"}, text[-3000:]
    assert (
        "its job was lost" in trials[0].user_attrs["reason"] and "CANCELLED" in trials[0].user_attrs["reason"]
    )
    retry = trials[1]
    assert retry.system_attrs["failed_trial"] == 0 and retry.params == trials[0].params
    record = result_of(retry.user_attrs["folder"])
    assert record["status"] == "ok" and record["config"]["trial"]["number"] == 1
    assert any(w.startswith("resumed from") for w in record["warnings"]), record["warnings"]
    assert not (Path(trials[0].user_attrs["folder"]) / "result.json").exists()  # the killed job wrote none
    jobs = accounting(cluster, before)
    print(f"scancel jobs: {jobs}")
    assert sorted(jobs.values()) == ["CANCELLED by 0", "COMPLETED"], jobs


# --------------------------------------------------------------------------------------------- preemption


def test_preempted_job_checkpoints_is_requeued_and_ends_with_the_uninterrupted_numbers(cluster, tmp_path):
    started = time.time()
    before = {j["JobID"] for j in cluster.jobs()}
    run = [*SLOW_RUN, "epochs=8", "strategy=never"]
    reference = subprocess.Popen(  # the same run, uninterrupted, outside SLURM, meanwhile
        [sys.executable, "-m", "harness.train", *run, f"paths.output_root={tmp_path / 'reference'}"],
        cwd=REPO,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    out = tmp_path / "outputs"
    log = tmp_path / "preempt.log"
    proc = start(cluster, log, *run, f"paths.output_root={out}")
    wait_for("the first checkpoint", lambda: checkpoint_epochs(out / "checkpoints") >= 1, log=log)
    job = wait_for("the running SLURM job", lambda: running_job(cluster), log=log)
    # What SLURM sends before a preemption or the time limit (--signal=USR2@60 asked by submitit).
    cluster.run("scancel", "--signal=USR2", job)
    # The job requeues itself (submitit: checkpoint() -> scontrol requeue). SLURM holds a requeued job for
    # two minutes before it may start again; an operator can let it start at once, as here.
    wait_for("the requeued job", lambda: cluster.requeues(job) >= 1 and job_state(cluster, job) == "PENDING")
    cluster.run("scontrol", "update", f"JobId={job}", "StartTime=now")
    finish(proc, log)
    assert reference.wait(timeout=120) == 0

    [record_path] = out.glob("multirun/*/*/0/result.json")
    resumed = json.loads(record_path.read_text())
    [ref_path] = (tmp_path / "reference").glob("runs/*/*/result.json")
    uninterrupted = json.loads(ref_path.read_text())
    [job_log] = job_logs(out).values()
    signal_epoch = int(job_log.split("preempt: SIGUSR2 in epoch ", 1)[1].split(":")[0])
    seconds = time.time() - started
    print(
        f"preempt: job {job} got SIGUSR2 in epoch {signal_epoch}, requeued {cluster.requeues(job)} time(s); "
        f"resumed metrics {resumed['metrics']['val_acc']:.4f}/{resumed['metrics']['test_acc']:.4f} "
        f"uninterrupted {uninterrupted['metrics']['val_acc']:.4f}/{uninterrupted['metrics']['test_acc']:.4f}; "
        f"{seconds:.0f} s"
    )
    assert 1 <= signal_epoch < 8
    assert f"checkpoint after epoch {signal_epoch} saved" in job_log
    assert f"resumed from {out / 'checkpoints'}" in job_log
    assert resumed["warnings"] == [
        f"resumed from {out / 'checkpoints' / resumed['run_id'] / 'last.pt'} after epoch {signal_epoch}"
    ]
    assert resumed["run_id"] == uninterrupted["run_id"]
    assert history(resumed) == history(uninterrupted)  # every epoch's numbers, exactly
    assert resumed["metrics"] == uninterrupted["metrics"]
    assert job_log.count("- Requeued job") == 1 and resumed["status"] == "ok"
    assert accounting(cluster, before) == {job: "COMPLETED"}  # one job, requeued in place, no second one


# ------------------------------------------------------------------------------------------- a dead node


def test_a_dead_node_fails_the_trial_by_heartbeat_and_the_sweep_goes_on(cluster, tmp_path, postgres_url):  # noqa: F811
    out = tmp_path / "outputs"
    log = tmp_path / "node.log"
    proc = start(
        cluster,
        log,
        "search=finetune_lr",
        "search.n_trials=2",
        f"search.storage={postgres_url}",
        "search.study_name=slurm_dead_node",
        "search.heartbeat_interval=2",
        "search.grace_period=8",
        "hydra.launcher.array_parallelism=1",
        "strategy.base_lr=choice(1e-2,3e-2)",
        "search.sampler.name=grid",
        *SEARCH_SLOW,
        f"paths.output_root={out}",
    )
    wait_for("trial 0's second checkpoint", lambda: checkpoint_epochs(out / "checkpoints") >= 2, log=log)
    cluster.kill_node()  # slurmd, the job's slurmstepd and the training process: all gone at once
    wait_for("the heartbeat watch", lambda: "stopped sending heartbeats" in log.read_text(), 60, log)
    cluster.start_slurmd()  # the node comes back; the sweep goes on there
    text = finish(proc, log, timeout=300)
    trials = load_study(postgres_url, "slurm_dead_node").trials
    states = {t.number: t.state.name for t in trials}
    print(f"dead node: states {states}; reason {trials[0].user_attrs.get('reason')!r}")
    assert states[0] == "FAIL" and "stopped sending heartbeats" in trials[0].user_attrs["reason"]
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(finished) == 2 and len(trials) == 3, (states, text[-3000:])
    retry = next(t for t in finished if t.system_attrs.get("failed_trial") == 0)
    assert retry.params == trials[0].params
    assert any(w.startswith("resumed from") for w in result_of(retry.user_attrs["folder"])["warnings"])
    assert {t.params["strategy.base_lr"] for t in finished} == {1e-2, 3e-2}  # the other point ran too
