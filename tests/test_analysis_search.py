"""Search views from a study the test builds with Optuna and writes out with the search's own writer
(harness/search/outputs.py): the same trials from trials.csv and from the storage URL, states and the pruned
share, best trials with their re-run overrides, importances, and clear errors."""

from __future__ import annotations

import math
import shutil
import warnings

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from analysis import figures
from analysis.search import (
    best_trials,
    find_searches,
    importances,
    load_trials,
    normalise,
    pruned_share,
    state_counts,
)
from harness.search.outputs import write_outputs

DISTS = {
    "lr": FloatDistribution(1e-4, 1e-1, log=True),
    "epochs": IntDistribution(1, 4),
    "strategy": CategoricalDistribution(["never", "head_only"]),
}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """20 trials: the objective is driven by lr (and a little by epochs); 4 pruned, 2 failed."""
    tmp_path = tmp_path_factory.mktemp("search")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="demo", storage=url, direction="maximize")
    study.set_user_attr("freezelab", {"objectives": ["val_acc"], "pruner": "median"})  # as the sweeper does
    rng = np.random.default_rng(0)
    for i in range(20):
        params = {
            "lr": float(10 ** rng.uniform(-4, -1)),
            "epochs": 1 + i % 4,
            "strategy": ["never", "head_only"][i % 2],
        }
        folder = tmp_path / f"trial_{i}"
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "overrides.yaml").write_text(
            yaml.safe_dump(
                [f"lr={params['lr']}", f"epochs={params['epochs']}", f"trial.number={i}", "trial.study=demo"]
            )
        )
        attrs = {"folder": str(folder), "status": "ok"}
        if i in (3, 7, 11, 15):
            state, value = TrialState.PRUNED, None
        elif i in (5, 9):
            state, value, attrs = TrialState.FAIL, None, {**attrs, "reason": "NumericalError: loss is nan"}
        else:
            state, value = (
                TrialState.COMPLETE,
                0.4 + 0.15 * (math.log10(params["lr"]) + 4) + 0.005 * params["epochs"],
            )
        study.add_trial(
            optuna.trial.create_trial(
                params=params, distributions=DISTS, value=value, state=state, user_attrs=attrs
            )
        )
    write_outputs(study, ["val_acc"], tmp_path, url)
    return tmp_path, url, study


def test_csv_and_storage_give_the_same_trials(sweep):
    folder, url, study = sweep
    from_csv, from_db = load_trials(folder / "trials.csv"), load_trials(url, "demo")
    assert from_csv.attrs["objectives"] == from_db.attrs["objectives"] == ["val_acc"]
    cols = ["number", "state", "val_acc", "params.lr", "params.epochs", "params.strategy", "folder"]
    pd.testing.assert_frame_equal(from_csv[cols], from_db[cols], check_dtype=False)
    assert load_trials(folder).attrs["source"].endswith("trials.csv")  # a sweep folder: its CSV
    assert find_searches(folder) == [folder] and folder in find_searches(folder.parent)


def test_states_pruned_share_and_best(sweep):
    trials = load_trials(sweep[0])
    counts = state_counts(trials).set_index("state")["trials"].to_dict()
    assert counts == {"COMPLETE": 14, "FAIL": 2, "PRUNED": 4}
    assert pruned_share(trials) == pytest.approx(4 / 20)
    fails = trials[trials["state"] == "FAIL"]
    assert set(fails["reason"]) == {"NumericalError: loss is nan"}
    best = best_trials(trials, k=3)
    complete = trials[trials["state"] == "COMPLETE"].sort_values("val_acc", ascending=False)
    assert best["number"].tolist() == complete["number"].head(3).tolist()
    assert best["number"].iloc[0] == sweep[2].best_trial.number
    assert best["overrides"].iloc[0].startswith("lr=") and "trial." not in best["overrides"].iloc[0]


def test_importances_find_the_parameter_that_matters(sweep):
    imp = importances(load_trials(sweep[0]))
    assert imp.index[0] == "lr" and imp["lr"] > 0.5 and imp.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 2 complete trials"):
        importances(
            load_trials(sweep[0]).query("state != 'COMPLETE'").pipe(_keep_attrs, load_trials(sweep[0]))
        )


def _keep_attrs(frame, like):
    frame.attrs.update(like.attrs)
    return frame


def test_optuna_dataframe_spelling_is_accepted(sweep):
    frame = normalise(sweep[2].trials_dataframe(), ["value"])
    assert {"params.lr", "params.epochs", "duration_s"} <= set(frame.columns)
    assert frame["state"].isin(["COMPLETE", "PRUNED", "FAIL"]).all()


def test_clear_errors(tmp_path, sweep):
    missing = tmp_path / "nowhere.db"
    with pytest.raises(FileNotFoundError, match="no study database"):
        load_trials(f"sqlite:///{missing}")
    assert not missing.exists()  # Optuna would have created an empty database
    shutil.copy(sweep[0] / "study.db", tmp_path / "two.db")
    url = f"sqlite:///{tmp_path / 'two.db'}"
    optuna.create_study(study_name="second", storage=url)
    with pytest.raises(ValueError, match="holds 2 studies"):
        load_trials(url)
    with pytest.raises(ValueError, match="no study 'x'"):
        load_trials(url, "x")
    with pytest.raises(FileNotFoundError, match="neither trials.csv nor study.db"):
        load_trials(sweep[0] / "trial_0")


def test_search_figures_render(sweep, tmp_path):
    trials = load_trials(sweep[0])
    paths = figures.save(figures.optimization_history(trials, objective="val_acc"), tmp_path / "f", "history")
    paths2 = figures.save(
        figures.param_importances(pd.Series({"lr": 0.8, "epochs": 0.2})), tmp_path / "f", "imp"
    )
    for p in (*paths.values(), *paths2.values()):
        assert p.stat().st_size > 5000


def test_importances_warn_with_few_complete_trials(sweep):
    trials = load_trials(sweep[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 14 complete trials: no warning
        enough = importances(trials)
    assert enough.attrs["complete_trials"] == 14 and "warning" not in enough.attrs
    few = _keep_attrs(trials[trials["number"] < 8], trials)  # 5 complete, 2 pruned, 1 failed
    with pytest.warns(UserWarning, match="only 5 complete trials"):
        imp = importances(few)
    assert "mostly noise" in imp.attrs["warning"] and imp.sum() == pytest.approx(1.0)  # still computed
    fig = figures.param_importances(imp)
    assert "UNRELIABLE: only 5 complete trials" in fig.axes[0].get_title(loc="left")
    assert "UNRELIABLE" not in figures.param_importances(enough).axes[0].get_title(loc="left")


def test_importances_of_trials_that_all_scored_the_same_are_zero_with_a_warning(sweep):
    trials = load_trials(sweep[0])
    same = _keep_attrs(trials.assign(val_acc=1.0), trials)  # fANOVA itself raises on zero variance
    with pytest.warns(UserWarning, match="all 14 complete trials have the same val_acc"):
        imp = importances(same)
    assert dict(imp) == {"lr": 0.0, "epochs": 0.0, "strategy": 0.0} and imp.attrs["no_variance"]
    few = _keep_attrs(same[same["number"] < 8], trials)
    with pytest.warns(UserWarning, match="only 5 complete trials.*the same val_acc"):
        importances(few)
    title = figures.param_importances(imp).axes[0].get_title(loc="left")
    assert "NO VARIANCE: all 14 complete trials scored the same" in title and "UNRELIABLE" not in title
