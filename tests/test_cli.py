"""The command line as a user meets it: real `python -m harness.train` processes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # every test here starts a real process
QUICK = ["data=synthetic", "epochs=1", "threads=1", "progress=false"]
TINY = QUICK + ["model.channels=[8,8]", "model.hidden=[16]"]


def harness(*args, root, module="harness.train"):
    cmd = [sys.executable, "-m", module, *args, f"paths.output_root={root}"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=REPO)


def test_a_run_prints_where_its_result_is(tmp_path):
    done = harness(*TINY, "strategy=full_unfreeze", root=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    path = Path(done.stdout.strip().splitlines()[-1].split("result: ")[-1])
    assert path.is_file() and json.loads(path.read_text())["status"] == "ok"
    assert "phase 1/2 'frozen'" in done.stdout and "phase 2/2 'unfrozen'" in done.stdout  # both summaries


def test_multirun_grid_writes_one_record_per_job(tmp_path):
    # The grid (two seeds x the two built-in families at their default sizes), one epoch each on a
    # small synthetic set: the README measures it on digits.
    done = harness(
        "-m", "seed=0,1", "model=convnet,resnet18", "data=synthetic", "data.per_class=10", "epochs=1",
        "threads=1", root=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(p.read_text()) for p in tmp_path.glob("multirun/*/*/*/result.json")]
    assert sorted((r["config"]["model"]["name"], r["config"]["seed"]) for r in records) == [
        ("convnet", 0),
        ("convnet", 1),
        ("resnet18", 0),
        ("resnet18", 1),
    ]
    assert all(r["status"] == "ok" for r in records)


def bad_weights(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"conv1.0.weight": torch.zeros(3, 3, 3, 3)}, path)
    return path


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["split=classes", "split.A=[0,1]", "split.B=[2,42]", "half=B"], "42"),
        (["split=classes", "split.A=[0,1]", "split.B=[1,2]", "half=B"], "overlap"),
        (["data=imagefolder", "data.root=/nonexistent/images"], "/nonexistent/images"),
        (["strategy=freeze_to", "strategy.k=9"], "strategy.k=9 is out of range"),
        (["lr={lo:1e-2,hi:1e-4}"], "lo=0.01 is greater than hi=0.0001"),
        (["strategy=head_only", "strategy.bn=sometimes"], "strategy.bn='sometimes'"),
        (["half=A"], "split"),
        (["model=resnet18", "model.weights=WEIGHTS"], "model.weights"),
        (["strategy=llrd", "strategy.gamma=2"], "strategy.gamma=2"),
        (["strategy=lp_ft"], "strategy=lp_ft needs a pretrained start"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, overrides, expected):
    overrides = [o.replace("WEIGHTS", str(bad_weights(tmp_path))) for o in overrides]
    base = QUICK if any(o.startswith("model=") for o in overrides) else TINY
    done = harness(*base, *overrides, root=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not list(tmp_path.rglob("result.json"))  # nothing that looks finished


@pytest.mark.parametrize("group, value", [("data", "imagenet"), ("model", "vgg99"), ("split", "thirds")])
def test_unknown_config_option_names_the_choices(tmp_path, group, value):
    done = harness(*TINY, f"{group}={value}", root=tmp_path)
    assert done.returncode != 0
    assert f"Could not find '{group}/{value}'" in done.stderr and "Available options" in done.stderr


@pytest.mark.parametrize("preset", ["experiment=transferability_quick", "search=finetune_lr"])
def test_a_sweep_preset_without_minus_m_is_one_line_telling_to_add_it(tmp_path, preset):
    done = harness(preset, "threads=1", root=tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "add -m (python -m harness.train -m " + preset in lines[0]
    assert not any(tmp_path.iterdir())  # no job ran, no folder was made
