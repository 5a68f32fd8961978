"""Views of an Optuna search: the trials table, pruned share, best trials with their configs, parameter
importances. Works from the search's ``trials.csv`` (written next to the sweep by harness/search/outputs.py),
from a sweep folder holding it or its ``study.db``, or from any Optuna storage URL and study name.

The normalised trials table has: ``number``, ``state`` (COMPLETE | PRUNED | FAIL | RUNNING | WAITING), one column
per objective (e.g. ``val_acc``), ``params.<name>`` per searched key, ``duration_s``, ``folder``, ``reason``.
Optuna's own ``trials_dataframe`` spelling (``value``, ``params_<name>``, ``duration``) is accepted too.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pandas as pd

TABLE_NAME = "trials.csv"  # harness.search.outputs.TABLE_NAME
STORAGE_NAME = "study.db"  # harness.search.study.STORAGE_NAME
BEST_NAME = "best.yaml"  # harness.search.outputs.BEST_NAME
ATTR_KEY = "freezelab"  # study user attribute holding the objectives (harness.search.study.ATTR_KEY)
META = {
    "number",
    "state",
    "status",
    "reason",
    "stopped_epoch",
    "epochs",
    "duration_s",
    "train_seconds",
    "started",
    "completed",
    "duplicate_of",
    "retry_of",
    "folder",
    "datetime_start",
    "datetime_complete",
    "duration",
}


def find_searches(path: str | Path) -> list[Path]:
    """Folders below ``path`` holding a trials table or a study database (each is one search)."""
    path = Path(path)
    if path.is_file():
        return [path.parent]
    found = {
        p.parent
        for name in (TABLE_NAME, STORAGE_NAME)
        for p in path.rglob(name)
        if not any(part.startswith(".") for part in p.relative_to(path).parts[:-1])
    }
    return sorted(found)


def load_trials(source: str | Path, study: str | None = None) -> pd.DataFrame:
    """The trials table of a search. ``source``: a ``trials.csv``, a sweep folder, or a storage URL
    (``sqlite:///.../study.db``, ``postgresql+psycopg://...``) with ``study`` (optional when the storage holds
    one study). ``attrs``: ``objectives``, ``directions``, ``source``, ``study``."""
    text = str(source)
    if "://" in text:
        return _from_storage(text, study)
    path = Path(source)
    if path.is_dir():
        if (path / TABLE_NAME).is_file():
            path = path / TABLE_NAME
        elif (path / STORAGE_NAME).is_file():
            return _from_storage(f"sqlite:///{(path / STORAGE_NAME).resolve()}", study)
        else:
            raise FileNotFoundError(
                f"{path} holds neither {TABLE_NAME} nor {STORAGE_NAME}: is it a search's sweep folder?"
            )
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    raw = pd.read_csv(path)
    objectives = _best_values(path.parent)
    table = normalise(raw, objectives if objectives and set(objectives) <= set(raw.columns) else None)
    table.attrs.update({"source": str(path), "study": _study_name(path.parent) or path.parent.name})
    table.attrs.setdefault("directions", [_guess_direction(o) for o in table.attrs["objectives"]])
    return table


def normalise(table: pd.DataFrame, objectives: list[str] | None = None) -> pd.DataFrame:
    """Bring either spelling to ``params.<name>``, ``duration_s`` and named objective columns."""
    table = table.rename(
        columns={c: "params." + c[len("params_") :] for c in table.columns if c.startswith("params_")}
    )
    if "duration_s" not in table and "duration" in table:
        table["duration_s"] = pd.to_timedelta(table["duration"]).dt.total_seconds()
    for col in ("user_attrs_folder", "user_attrs_reason"):
        if col in table:
            table[col.removeprefix("user_attrs_")] = table[col]
    if objectives is None:
        objectives = _objective_columns(table)
    for col in ("folder", "reason", "duration_s"):
        if col not in table:
            table[col] = None
    table["state"] = table["state"].astype(str).str.upper()
    table = table.sort_values("number").reset_index(drop=True)
    table.attrs["objectives"] = list(objectives)
    return table


def _objective_columns(table: pd.DataFrame) -> list[str]:
    """The trials table puts the objectives right after ``state`` and before the parameters (Optuna's own
    dataframe: ``value`` or ``values_<i>``); metadata columns follow the parameters and may grow."""
    if "value" in table or any(c.startswith("values_") for c in table.columns):
        return [c for c in table.columns if c == "value" or c.startswith("values_")]
    columns = list(table.columns)
    start = columns.index("state") + 1 if "state" in columns else 0
    out = []
    for c in columns[start:]:
        if c.startswith("params.") or c in META:
            break
        out.append(c)
    return out


def _from_storage(url: str, study: str | None) -> pd.DataFrame:
    import optuna

    if url.startswith("sqlite:///"):
        file = Path(url[len("sqlite:///") :])
        if not file.is_file():  # Optuna would create an empty database there; say what is wrong instead
            raise FileNotFoundError(f"no study database at {file}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        names = optuna.study.get_all_study_names(storage=url)
        if study is None:
            if len(names) != 1:
                raise ValueError(
                    f"{url} holds {len(names)} studies ({', '.join(names)}): name one with study=..."
                )
            study = names[0]
        elif study not in names:
            raise ValueError(f"no study '{study}' in {url}; it holds: {', '.join(names) or 'none'}")
        s = optuna.load_study(study_name=study, storage=url)
    objectives = (s.user_attrs.get(ATTR_KEY) or {}).get("objectives") or (
        ["value"] if len(s.directions) == 1 else [f"value_{i}" for i in range(len(s.directions))]
    )
    rows = []
    for t in s.get_trials(deepcopy=False):
        row = {"number": t.number, "state": t.state.name}
        for name, v in zip(objectives, t.values or [None] * len(objectives), strict=False):
            row[name] = v
        row.update({f"params.{k}": v for k, v in t.params.items()})
        done = t.datetime_complete and t.datetime_start
        row.update(
            {
                "duration_s": (t.datetime_complete - t.datetime_start).total_seconds() if done else None,
                "folder": t.user_attrs.get("folder"),
                "reason": t.user_attrs.get("reason"),
                "status": t.user_attrs.get("status"),
            }
        )
        rows.append(row)
    table = normalise(
        pd.DataFrame(rows, columns=["number", "state", *objectives]) if not rows else pd.DataFrame(rows),
        objectives,
    )
    table.attrs.update({"source": url, "study": study, "directions": [d.name.lower() for d in s.directions]})
    return table


def _best_doc(folder: Path) -> dict:
    try:
        import yaml

        doc = yaml.safe_load((folder / BEST_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _study_name(folder: Path) -> str | None:
    return _best_doc(folder).get("study")


def _best_values(folder: Path) -> list[str] | None:
    """The objective names best.yaml lists (``values: {val_acc: ...}``), if the search wrote one."""
    values = _best_doc(folder).get("values")
    return list(values) if isinstance(values, dict) else None


def _guess_direction(objective: str) -> str:
    return "minimize" if objective.endswith(("loss", "seconds", "error")) else "maximize"


# --- views --------------------------------------------------------------------------------------------------------


def state_counts(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials per state and their share; the pruned share is the PRUNED row's ``share``."""
    counts = trials["state"].value_counts()
    table = pd.DataFrame({"state": counts.index, "trials": counts.to_numpy()})
    table["share"] = table["trials"] / max(len(trials), 1)
    return table.sort_values("state").reset_index(drop=True)


def pruned_share(trials: pd.DataFrame) -> float:
    """Pruned trials over finished ones (COMPLETE + PRUNED + FAIL); NaN before any finished."""
    finished = trials["state"].isin(["COMPLETE", "PRUNED", "FAIL"]).sum()
    return float((trials["state"] == "PRUNED").sum() / finished) if finished else math.nan


def best_trials(
    trials: pd.DataFrame, k: int = 5, objective: str | None = None, direction: str | None = None
) -> pd.DataFrame:
    """The ``k`` best complete trials, best first, with their parameters and the overrides that re-run them
    (read from each trial folder's ``.hydra/overrides.yaml`` when it is there)."""
    objective = objective or trials.attrs["objectives"][0]
    direction = direction or (trials.attrs.get("directions") or ["maximize"])[0]
    done = trials[trials["state"] == "COMPLETE"].dropna(subset=[objective])
    best = done.sort_values([objective, "number"], ascending=[direction == "minimize", True]).head(k).copy()
    best["overrides"] = [_overrides(f) for f in best["folder"]]
    params = [c for c in trials.columns if c.startswith("params.")]
    return best[["number", objective, *params, "duration_s", "folder", "overrides"]].reset_index(drop=True)


def _overrides(folder) -> str | None:
    if not isinstance(folder, str) or not folder:
        return None
    try:
        import yaml

        items = yaml.safe_load((Path(folder) / ".hydra" / "overrides.yaml").read_text()) or []
    except (OSError, ValueError):
        return None
    # The trial.* overrides only re-attach a job to its trial; they are not part of the config.
    return " ".join(str(o) for o in items if not str(o).startswith("trial."))


MIN_TRIALS_FOR_IMPORTANCES = 10  # below this, a forest fitted to the trials ranks parameters by noise


def importances(trials: pd.DataFrame, objective: str | None = None, seed: int = 0) -> pd.Series:
    """fANOVA importance of each searched parameter (Optuna's evaluator; shares summing to 1), computed from the
    complete trials. Distributions are inferred from the table: numbers spanning 100x or more on a log scale,
    whole numbers as integers, anything else categorical. Raises ValueError with fewer than 2 complete trials.

    With fewer than :data:`MIN_TRIALS_FOR_IMPORTANCES` complete trials the numbers are still returned, with a
    ``UserWarning`` and the same text in ``attrs["warning"]`` (figures and reports show it); ``attrs`` also
    holds ``complete_trials``. When every complete trial scored the same, every importance is 0, with a
    warning and ``attrs["no_variance"]`` (an easy task where every setting reaches 100 % does that)."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    objective = objective or trials.attrs["objectives"][0]
    params = [c for c in trials.columns if c.startswith("params.")]
    done = trials[(trials["state"] == "COMPLETE") & trials[objective].notna()]
    if len(done) < 2 or not params:
        raise ValueError(
            f"parameter importances need at least 2 complete trials with parameters; this search has "
            f"{len(done)} complete trial(s) and {len(params)} parameter(s)"
        )
    if done[objective].nunique() == 1:  # fANOVA divides by the variance: none to share out
        series = pd.Series(0.0, index=[c.removeprefix("params.") for c in params], name="importance")
        series.attrs["complete_trials"] = len(done)
        series.attrs["no_variance"] = True
        same = (
            f"all {len(done)} complete trials have the same {objective} ({float(done[objective].iloc[0]):g}): "
            f"no parameter explains any difference, so every importance is 0"
        )
        series.attrs["warning"] = "; ".join(filter(None, [importance_warning(len(done)), same]))
        warnings.warn(series.attrs["warning"], UserWarning, stacklevel=2)
        return series
    dists = {}
    for col in params:
        values = done[col].dropna()
        numeric = pd.to_numeric(values, errors="coerce")
        if len(values) and numeric.notna().all():
            lo, hi = float(numeric.min()), float(numeric.max())
            if (numeric == numeric.round()).all():  # whole numbers (a CSV writes conditional ints as 1.0)
                dists[col] = IntDistribution(int(lo), int(hi))
            else:
                dists[col] = FloatDistribution(lo, hi, log=lo > 0 and hi / lo >= 100)
        else:
            dists[col] = CategoricalDistribution(sorted(values.astype(str).unique()))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(direction="maximize")
        for _, r in done.iterrows():
            present = {c: r[c] for c in params if pd.notna(r[c])}
            values = {
                c: (
                    str(v)
                    if isinstance(dists[c], CategoricalDistribution)
                    else int(v)
                    if isinstance(dists[c], IntDistribution)
                    else float(v)
                )
                for c, v in present.items()
            }
            study.add_trial(
                optuna.trial.create_trial(
                    params=values, distributions={c: dists[c] for c in values}, value=float(r[objective])
                )
            )
        result = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed)
        )
    series = pd.Series({k.removeprefix("params."): float(v) for k, v in result.items()}, name="importance")
    series = series.sort_values(ascending=False)
    series.attrs["complete_trials"] = len(done)
    warning = importance_warning(len(done))
    if warning:
        series.attrs["warning"] = warning
        warnings.warn(warning, UserWarning, stacklevel=2)
    return series


def importance_warning(complete: int) -> str | None:
    """The caveat for importances computed from ``complete`` trials, or None when there are enough."""
    if complete >= MIN_TRIALS_FOR_IMPORTANCES:
        return None
    return (
        f"parameter importances from only {complete} complete trials (fewer than "
        f"{MIN_TRIALS_FOR_IMPORTANCES}): fANOVA fits a random forest to them, and with so few points its ranking "
        f"is mostly noise; read it as a hint, not a finding"
    )
