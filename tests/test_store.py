"""The run store: a finished run is reused, never a damaged entry; resume=false starts over."""

from __future__ import annotations

import json

from harness.store import RunStore
from harness.train import train


def store_of(cfg, result) -> RunStore:
    return RunStore(cfg.checkpoint.dir, result["run_id"])


def test_a_finished_run_is_reused_under_the_new_jobs_config(make_cfg, tmp_path, capsys):
    first = train(make_cfg(["experiment_name=one"]), tmp_path / "one")
    cfg = make_cfg(["experiment_name=two"])  # another grid, the same run
    second = train(cfg, tmp_path / "two")
    assert "finished earlier" in capsys.readouterr().out
    assert second["run_id"] == first["run_id"] and second["history"] == first["history"]
    assert second["reused"]["from"] == str((tmp_path / "one").resolve())
    assert second["config"]["experiment_name"] == "two" and first["config"]["experiment_name"] == "one"
    assert json.loads((tmp_path / "two" / "result.json").read_text())["reused"] == second["reused"]
    assert not (tmp_path / "two" / "started.json").exists()  # nothing started there


def test_a_damaged_store_record_is_reported_and_the_run_trained_again(make_cfg, tmp_path, capsys):
    cfg = make_cfg()
    first = train(cfg, tmp_path / "one")
    store = store_of(cfg, first)
    for damage in (
        "{half a record",
        json.dumps({**first, "run_id": "0" * 16}),
        json.dumps({**first, "version": 0}),
    ):
        store.record_path.write_text(damage)
        again = train(cfg, tmp_path / "again")
        assert "unusable" in capsys.readouterr().out
        assert (
            "reused" not in again and again["metrics"] == first["metrics"]
        )  # trained (deterministic on CPU)
        assert store.finished()["run_id"] == first["run_id"]  # and the store entry is whole again


def test_a_damaged_checkpoint_is_never_resumed_from(make_cfg, tmp_path):
    cfg = make_cfg(["checkpoint.save=true"])
    first = train(cfg, tmp_path / "one")
    store = store_of(cfg, first)
    store.record_path.unlink()  # as if killed after the last checkpoint, before the record
    store.checkpoint.write_bytes(store.checkpoint.read_bytes()[:200])  # and the checkpoint cut short
    again = train(cfg, tmp_path / "again")
    assert any("started over" in w and "unreadable" in w for w in again["warnings"])
    assert again["metrics"] == first["metrics"] and len(again["history"]) == len(first["history"])


def test_resume_false_trains_from_the_start(make_cfg, tmp_path):
    first = train(make_cfg(), tmp_path / "one")
    again = train(make_cfg(["resume=false"]), tmp_path / "again")
    assert "reused" not in again and not any("resumed" in w for w in again["warnings"])
    assert again["metrics"] == first["metrics"]


def test_a_failed_run_is_not_stored_so_a_rerun_tries_it_again(make_cfg, tmp_path):
    cfg = make_cfg(["lr=1e8"])  # diverges
    first = train(cfg, tmp_path / "one")
    assert first["status"] == "failed" and store_of(cfg, first).finished() is None
    assert "reused" not in train(cfg, tmp_path / "again")
