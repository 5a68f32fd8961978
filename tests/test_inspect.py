"""``python -m harness.show RUN_DIR``: the per-phase summary and weight-change table of a finished run."""

import json
import subprocess
import sys

import pytest

from harness.show import main
from harness.train import train


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    from tests.conftest import compose_config

    root = tmp_path_factory.mktemp("inspect")
    cfg = compose_config(
        ["strategy=full_unfreeze", "strategy.epochs=2", "model.batchnorm=true", "diagnostics.cka=true"],
        root=root / "outputs",
    )
    train(cfg, root / "run")
    return root / "run"


def test_prints_summary_change_table_cka_and_warnings(finished, capsys):
    assert main([str(finished)]) == 0
    out = capsys.readouterr().out
    assert "plan: full_unfreeze, 3 epochs; norm layers of frozen groups: train" in out
    assert "phase 1/2 'frozen' (1 epoch, one_cycle)" in out and "phase 2/2 'unfrozen'" in out
    header = next(line for line in out.splitlines() if line.startswith("group  params"))
    assert header.split() == ["group", "params", "trainable", "bn", "lr"]
    assert "bn only" in out  # frozen groups whose BatchNorm trains under bn=train
    lines = out.splitlines()
    start = next(
        i for i, line in enumerate(lines) if line.startswith("weight change ||W_t - W_0|| / ||W_0||")
    )
    assert lines[start + 1].split() == ["group", "1", "2", "3"]
    conv1 = lines[start + 3].split()
    assert conv1[0] == "conv1" and conv1[1].endswith("*") and not conv1[2].endswith("*")
    assert "phase 1 'frozen' = epoch 1; phase 2 'unfrozen' = epochs 2-3" in out
    assert "update/weight" in out and "bn stats drift" in out
    assert "linear CKA" in out and "vs start" in out
    assert "warnings: none" in out


def test_accepts_the_record_file_and_a_record_without_diagnostics(finished, tmp_path, capsys):
    record = json.loads((finished / "result.json").read_text())
    for key in ("diagnostics", "cka", "cka_probe"):
        record.pop(key)
    record["warnings"] = ["something to see"]
    (tmp_path / "result.json").write_text(json.dumps(record))
    assert main([str(tmp_path / "result.json")]) == 0
    out = capsys.readouterr().out
    assert "no weight diagnostics in this record" in out and "phase 2/2 'unfrozen'" in out
    assert "warnings (1):\n  - something to see" in out and "linear CKA" not in out


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist"),
        ("", "no result.json in"),
        ("{not json", "is not a readable run record"),
        ('{"status": "ok"}', "is not a freezelab run record"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, content, message):
    target = tmp_path / "missing"
    if content is not None:
        target = tmp_path / "folder"
        target.mkdir()
        if content:
            (target / "result.json").write_text(content)
    assert main([str(target)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and message in captured.err and captured.err.count("\n") == 1


@pytest.mark.slow
def test_the_module_runs_from_the_command_line(finished, tmp_path):
    ok = subprocess.run([sys.executable, "-m", "harness.show", str(finished)], capture_output=True, text=True)
    assert ok.returncode == 0 and "weight change" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "harness.show", str(tmp_path / "nope")], capture_output=True, text=True
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and bad.stdout == ""
