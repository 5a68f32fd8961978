"""Where a report's numbers come from: the code (harness version and git commit of the runs, and of the analysis
that made the report), the commands that launched the sweeps, the configs, the seeds and the dates."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import pandas as pd

from analysis.selection import NOT_IDENTITY


def analysis_version() -> dict:
    try:
        version = metadata.version("freezelab")
    except metadata.PackageNotFoundError:
        version = None
    repo = Path(__file__).resolve().parents[1]
    return {
        "version": version,
        "git_commit": _git(repo, "rev-parse", "HEAD"),
        # --no-optional-locks: reading the status must not rewrite the index of a checkout others work in
        "git_dirty": bool(_git(repo, "--no-optional-locks", "status", "--porcelain", "--untracked-files=no")),
        "python": platform.python_version(),
        "pandas": pd.__version__,
        "matplotlib": metadata.version("matplotlib"),
        "scipy": metadata.version("scipy"),
    }


def _git(repo: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def report_command(argv: list[str] | None = None) -> str:
    argv = sys.argv if argv is None else argv
    if argv and argv[0].endswith(("report.py", "__main__.py")) or (argv and argv[0] == "-m"):
        return "python -m analysis.report " + " ".join(argv[1:])
    return " ".join(argv)


def sweep_command(sweep: str | Path) -> str | None:
    """The command line that launched a Hydra sweep, rebuilt from its ``multirun.yaml``."""
    try:
        import yaml

        cfg = yaml.safe_load((Path(sweep) / "multirun.yaml").read_text()) or {}
    except (OSError, ValueError):
        return None
    hydra = cfg.get("hydra") or {}
    task = (hydra.get("overrides") or {}).get("task") or []
    job = (hydra.get("job") or {}).get("name") or "train"
    module = "harness.train" if job == "train" else job
    return " ".join([f"python -m {module} -m", *(_quote(str(o)) for o in task)])


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def common_config(record_paths) -> tuple[dict, dict]:
    """(the config every run shares, nested; the dotted keys that vary, each with its sorted values), read from
    the runs' records so values keep their types. Bookkeeping keys (paths, logger, checkpoint, ...) are left out."""
    from analysis.load import flatten

    configs = []
    for path in record_paths:
        try:
            configs.append(flatten(json.loads(Path(path).read_text()).get("config") or {}))
        except (OSError, ValueError, AttributeError):
            continue
    keys = sorted({k for c in configs for k in c})
    common, varies = {}, {}
    for key in keys:
        if any(key == k or key.startswith(f"{k}.") for k in NOT_IDENTITY):
            continue
        distinct = {json.dumps(c.get(key), sort_keys=True, default=str) for c in configs}
        decoded = [_decode(json.loads(v)) for v in sorted(distinct)]
        if len(decoded) == 1:
            _set(common, key, decoded[0])
        else:
            varies[key] = decoded
    return common, varies


def _decode(value):
    """Lists were flattened to JSON text; give them back as lists."""
    if isinstance(value, str) and value.startswith("["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _set(tree: dict, dotted: str, value) -> None:
    parts = dotted.split(".")
    for p in parts[:-1]:
        tree = tree.setdefault(p, {})
        if not isinstance(tree, dict):
            return
    tree[parts[-1]] = value


def run_provenance(runs: pd.DataFrame) -> dict:
    """Versions, commits, seeds and dates of a set of runs."""

    def counts(col):
        return (
            {str(k): int(v) for k, v in runs[col].value_counts(dropna=False).items()} if col in runs else {}
        )

    started = (
        runs["timing.started"].dropna()
        if "timing.started" in runs
        else pd.Series(dtype="datetime64[ns, UTC]")
    )
    finished = runs["timing.finished"].dropna() if "timing.finished" in runs else started
    seeds = sorted({int(s) for s in runs["seed"].dropna()})
    split_seeds = (
        sorted({int(s) for s in pd.to_numeric(runs.get("transfer.split_seed"), errors="coerce").dropna()})
        if "transfer.split_seed" in runs
        else []
    )
    sweeps = sorted({s for s in runs["sweep"].dropna()})
    return {
        "runs": len(runs),
        "harness_version": counts("harness.version"),
        "harness_git_commit": counts("harness.git_commit"),
        "torch": counts("environment.torch"),
        "device": counts("environment.device"),
        "seeds": seeds,
        "split_seeds": split_seeds,
        "first_started": started.min().isoformat() if len(started) else None,
        "last_finished": finished.max().isoformat() if len(finished) else None,
        "sweeps": {s: sweep_command(s) for s in sweeps},
    }


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
