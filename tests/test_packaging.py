"""The installable package: a built wheel (not editable) carries conf/ and runs from an unrelated folder, and a
user's own config folder adds presets through Hydra's --config-dir."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.config import compose

REPO = Path(__file__).resolve().parents[1]


def test_checkout_reads_the_repository_conf():
    assert compose.CONF_DIR == REPO / "conf"


def _copy_sources(dest: Path) -> None:
    """The files git would ship (tracked and untracked-not-ignored), so no build output of the checkout leaks in."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        listed = None
    if not listed:
        ignore = shutil.ignore_patterns(".git", "outputs", "build", "*.egg-info", "__pycache__", "wandb")
        shutil.copytree(REPO, dest, ignore=ignore)
        return
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


@pytest.mark.slow
def test_wheel_runs_from_another_folder(tmp_path):
    src, dist, site, elsewhere = (tmp_path / d for d in ("src", "dist", "site", "elsewhere"))
    _copy_sources(src)
    pip = [sys.executable, "-m", "pip"]
    # --no-build-isolation: the build uses the setuptools already here (no registry needed for the build)
    subprocess.run(
        [*pip, "wheel", str(src), "-w", str(dist), "--no-deps", "--no-build-isolation", "-q"],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = dist.glob("freezelab-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel), "-q"], check=True)
    assert (site / "harness" / "conf" / "config.yaml").is_file()

    # A user's own folder with an experiment preset of theirs, added to the search path by --config-dir.
    user_conf = elsewhere / "myconf" / "experiment"
    user_conf.mkdir(parents=True)
    (user_conf / "tiny_mine.yaml").write_text(
        "# @package _global_\n"
        "defaults:\n  - override /data: synthetic\n"
        "experiment_name: tiny_mine\nepochs: 1\nmodel:\n  channels: [4]\n  hidden: []\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["PYTHONPATH"] = str(site)  # the installed copy only, not the checkout
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import harness, runpy, sys; print('harness at', harness.__file__); "
            "sys.argv = ['harness.train', *sys.argv[1:]]; runpy.run_module('harness.train', run_name='__main__')",
            "--config-dir",
            "myconf",
            "experiment=tiny_mine",
            "threads=1",
            "progress=false",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"harness at {site / 'harness' / '__init__.py'}" in out.stdout
    (result,) = (elsewhere / "outputs" / "runs").glob("*/*/result.json")
    record = json.loads(result.read_text())
    assert record["status"] == "ok"
    assert (
        record["config"]["experiment_name"] == "tiny_mine" and record["config"]["data"]["name"] == "synthetic"
    )
