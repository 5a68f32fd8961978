"""The transferability experiment: base reuse and locking, exact copying/freezing/re-initialising of
the first n layers, the random control, and bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.engine import checkpoint
from harness.errors import ConfigError
from harness.train import train

GRID = ["transfer=yosinski", "split=random_half", "model.channels=[8,8,8]", "model.hidden=[16]"]  # L = 5


def treatment(make_cfg, tmp_path, name, n, extra=()):
    cfg = make_cfg(GRID + [f"transfer.treatment={name}", f"transfer.n={n}", *extra])
    return train(cfg, tmp_path / f"{name}_{n}")


def weights(path):
    return checkpoint.load(path)["model"]


def layer_keys(state, group):
    return [k for k in state if k.startswith(group + ".")]


@pytest.mark.parametrize("name, base_half", [("AnB", "A"), ("BnB", "B")])
def test_frozen_treatment_copies_and_freezes_exactly_the_first_n_layers(make_cfg, tmp_path, name, base_half):
    n = 2
    result = treatment(make_cfg, tmp_path, name, n)
    t = result["transfer"]
    assert t["treatment"] == name and t["n"] == n and t["layers"] == 5 and t["base"]["half"] == base_half
    base = weights(t["base"]["path"] + "/base.pt")
    after = weights(result["checkpoint"])
    groups = [g["name"] for g in result["groups"]]
    for i, group in enumerate(groups):
        for key in layer_keys(after, group):
            same = torch.equal(after[key], base[key]) if base[key].shape == after[key].shape else False
            # first n: copied and frozen, so still equal to the base; the rest: re-initialised and trained
            assert same == (i < n), (group, key)
    assert result["plan"]["phases"][0]["trainable"] == groups[n:]
    assert result["config"]["half"] == "B" and result["config"]["init"]["groups"] == n


def test_plus_treatment_starts_from_the_copy_and_trains_it(make_cfg, tmp_path, monkeypatch):
    n = 3
    seen = {}
    import harness.engine.checkpoint as ck

    original = ck.load_model_state

    def spy(model, state, path, *, n_groups=None):
        copied = original(model, state, path, n_groups=n_groups)
        seen["copied"] = copied
        seen["start"] = {k: v.clone() for k, v in model.net.state_dict().items()}
        return copied

    monkeypatch.setattr(ck, "load_model_state", spy)
    result = treatment(make_cfg, tmp_path, "AnB+", n)
    base = weights(result["transfer"]["base"]["path"] + "/base.pt")
    groups = [g["name"] for g in result["groups"]]
    assert seen["copied"] == groups[:n]
    for i, group in enumerate(groups):
        for key in layer_keys(seen["start"], group):
            if i < n:
                assert torch.equal(seen["start"][key], base[key]), key
    after = weights(result["checkpoint"])
    assert not torch.equal(after["conv1.0.weight"], base["conv1.0.weight"])  # "+": the copy trains
    assert result["plan"]["phases"][0]["trainable"] == groups


def test_random_control_freezes_random_layers(make_cfg, tmp_path):
    result = treatment(make_cfg, tmp_path, "random", 2)
    assert result["transfer"]["base"] is None and result["config"]["init"]["from"] is None
    assert result["plan"]["phases"][0]["trainable"] == ["conv3", "fc1", "head"]
    assert result["transfer"]["baseB"]["half"] == "B"  # the reference line is still recorded


def test_bases_are_trained_once_and_reused(make_cfg, tmp_path):
    first = treatment(make_cfg, tmp_path, "AnB", 1)
    second = treatment(make_cfg, tmp_path, "AnB", 2)
    third = treatment(make_cfg, tmp_path, "BnB+", 1)
    assert first["transfer"]["bases_trained_by_this_job"] == 2  # baseB (reference) and baseA
    assert second["transfer"]["bases_trained_by_this_job"] == 0
    assert third["transfer"]["bases_trained_by_this_job"] == 0
    assert first["transfer"]["base"]["key"] == second["transfer"]["base"]["key"]
    assert third["transfer"]["base"]["key"] == first["transfer"]["baseB"]["key"]
    assert len([p for p in (tmp_path / "outputs" / "bases").iterdir() if p.is_dir()]) == 2


def test_a_corrupt_base_entry_is_detected_and_retrained(make_cfg, tmp_path, capsys):
    first = treatment(make_cfg, tmp_path, "BnB", 1)
    entry = Path(first["transfer"]["base"]["path"])
    good_weights = weights(entry / "base.pt")
    good = (entry / "base.pt").read_bytes()
    (entry / "base.pt").write_bytes(good[: len(good) // 2])  # a half-written file
    again = treatment(make_cfg, tmp_path, "BnB", 2)
    assert "corrupt or incomplete" in capsys.readouterr().out
    assert again["transfer"]["bases_trained_by_this_job"] == 1
    retrained = weights(entry / "base.pt")  # same config, same seed: the same base again
    assert all(torch.equal(retrained[k], good_weights[k]) for k in good_weights)


@pytest.mark.slow
def test_two_parallel_jobs_share_one_base_training(tmp_path):
    """A real 2-process launcher (joblib): both jobs need the same bases at the same time."""
    out = tmp_path / "outputs"
    cmd = [
        sys.executable,
        "-m",
        "harness.train",
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "data=synthetic",
        *GRID,
        "transfer.treatment=AnB,BnB",
        "transfer.n=1",
        "epochs=2",
        "transfer.base_epochs=null",
        "transfer.epochs=null",
        "threads=1",
        "progress=false",
        f"paths.output_root={out}",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(p.read_text()) for p in out.glob("multirun/*/*/*/result.json")]
    assert len(records) == 2 and all(r["status"] == "ok" for r in records)
    trained = sum(r["transfer"]["bases_trained_by_this_job"] for r in records)
    assert trained == 2  # baseA once and baseB once, though both jobs needed baseB
    assert done.stdout.count("base cache: training base") == 2


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["transfer.treatment=AnB", "transfer.n=5"], "transfer.n=5 is out of range: .* n is 1 .. 4"),
        (["transfer.treatment=AnB", "transfer.n=0"], "transfer.n=0 is out of range"),
        (["transfer.treatment=CnB", "transfer.n=1"], "transfer.treatment='CnB' is not a treatment"),
    ],
)
def test_bad_transfer_input(make_cfg, tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        train(make_cfg(GRID + overrides), tmp_path / "bad")


def test_transfer_between_models_whose_layers_differ_in_shape(make_cfg, tmp_path):
    first = treatment(make_cfg, tmp_path, "BnB", 1)
    cfg = make_cfg(
        [
            "split=random_half",
            "half=B",
            "model.channels=[4,8,8]",
            "model.hidden=[16]",
            f"init.from={first['transfer']['base']['path']}/base.pt",
            "init.groups=2",
        ]
    )
    with pytest.raises(
        ConfigError, match=r"'conv1.0.weight' has shape \(8, 1, 3, 3\), this model needs \(4, 1, 3, 3\)"
    ):
        train(cfg, tmp_path / "mismatch")


def test_warm_start_continues_from_a_base_trained_on_a_fraction_of_b(make_cfg, tmp_path):
    warm = treatment(make_cfg, tmp_path, "warm", 1, ["transfer.warm_fraction=0.5"])
    scratch = treatment(make_cfg, tmp_path, "scratch", 1)
    base = warm["transfer"]["base"]
    assert base["half"] == "B" and base["key"] != warm["transfer"]["baseB"]["key"]
    fraction_base = json.loads((Path(base["path"]) / "result.json").read_text())
    assert fraction_base["config"]["data"]["train_fraction"] == 0.5
    assert fraction_base["data"]["train"] < warm["data"]["train"]  # the base saw part of B, the run all of it
    assert warm["config"]["init"] == {"from": str(Path(base["path"]) / "base.pt"), "groups": None}  # head too
    assert scratch["config"]["init"]["from"] is None and scratch["transfer"]["base"] is None
    assert len(warm["history"]) == len(scratch["history"])  # the same budget


def test_init_base_starts_an_ordinary_run_from_the_cached_base_of_the_other_half(make_cfg, tmp_path):
    from analysis.load import load_runs

    start = ["split=random_half", "half=B", "init.base=A"]
    first = train(make_cfg([*start, "strategy=never"]), tmp_path / "never")
    base = first["base"]
    assert base["half"] == "A" and base["trained_now"] and base["flops"] > 0
    assert first["config"]["init"]["from"] == str(Path(base["path"]) / "base.pt") and "transfer" not in first
    second = train(make_cfg([*start, "strategy=head_only"]), tmp_path / "head_only")
    assert second["base"]["key"] == base["key"] and not second["base"]["trained_now"]  # from the cache
    runs = load_runs(tmp_path)  # the two runs, and the base in the cache below tmp_path
    assert sorted(runs.loc[runs["kind"] == "run", "strategy"]) == ["head_only", "never"]
    assert "treatment" not in set(runs["kind"])  # ordinary runs for the analysis, not transfer treatments
