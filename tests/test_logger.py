"""wandb for real, offline: no account, no network, a run folder that `wandb sync` can upload later."""

import pytest

from harness.errors import ConfigError
from harness.train import train


def test_wandb_offline_run_is_written(make_cfg, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = make_cfg(
        ["logger=wandb", "experiment_name=logger_test", "strategy=full_unfreeze", "strategy.epochs=1"]
    )
    result = train(cfg, tmp_path / "run")
    assert result["status"] == "ok" and result["wandb"]["mode"] == "offline"
    runs = list((tmp_path / "outputs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert result["wandb"]["id"] in runs[0].name
    assert list(runs[0].glob("run-*.wandb"))  # the event log that `wandb sync` uploads


def test_unknown_logger_mode(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match="logger.mode='cloud'"):
        train(make_cfg(["logger=wandb", "logger.mode=cloud"]), tmp_path / "run")


def test_a_reused_run_replays_its_history_into_the_logger_it_is_asked_for(
    make_cfg, tmp_path, monkeypatch, capsys
):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    first = train(make_cfg(["epochs=2"]), tmp_path / "first")  # no logger: nothing logged
    assert "wandb" not in first
    again = train(make_cfg(["epochs=2", "logger=wandb"]), tmp_path / "again")  # the same run: reused
    assert again["reused"]["from"] and again["wandb"]["reused"] is True
    (folder,) = (tmp_path / "outputs" / "wandb").glob("offline-run-*")
    assert again["wandb"]["id"] in folder.name and list(folder.glob("run-*.wandb"))
    out = capsys.readouterr().out
    assert f"wandb sync {folder}" in out and "reused run logged again" in out
