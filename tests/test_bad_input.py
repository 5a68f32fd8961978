"""The bad-input catalogue: every entry is rejected before training with one line naming the key or path.

(The command line's side of it, exit code 2 and no traceback, is in tests/test_cli.py; storage entries run the
command line here.) /sys stands for a read-only folder: even root cannot create anything there.
"""

import pytest
import torch
from hydra.errors import HydraException
from PIL import Image

from harness.errors import ConfigError
from harness.train import train

GRID = ["transfer=yosinski", "split=random_half"]

CATALOGUE = [
    # config: wrong types and out-of-range values
    (["epochs=abc"], "strategy.epochs='abc'"),
    (["epochs=-1"], "strategy.epochs=-1"),
    (["batch_size=0"], "batch_size=0"),
    (["seed=abc"], "seed='abc'"),
    (["lr=-3"], "strategy.lr=-3"),
    (["lr={lo:1,hi:0.1}"], "lo=1 is greater than hi=0.1"),
    (["lr=[1e-3,1e-3]"], "lists 2 learning rates but the model has 4"),
    (["device=tpu"], "device='tpu'"),
    (["threads=0"], "threads=0"),
    (["optim.name=lion"], "optim.name='lion'"),
    (["optim.weight_decay=-1"], "optim.weight_decay=-1"),
    (["schedule.pct_start=2"], "schedule.pct_start=2"),
    (["schedule.name=cosine"], "schedule.name='cosine'"),
    (["speed.precision=fp8"], "speed.precision='fp8'"),
    (["logger=wandb", "logger.mode=cloud"], "logger.mode='cloud'"),
    # config: strategies
    (["strategy=freeze_to", "strategy.k=9"], "strategy.k=9 is out of range"),
    (["strategy=freeze_to", "strategy.k=1.5"], "strategy.k=1.5"),
    (["strategy=gradual", "strategy.every=0"], "strategy.every=0"),
    (["strategy=surgical", "strategy.groups=[]"], "strategy.groups is empty"),
    (["strategy=surgical", "strategy.groups=[conv9]"], "unknown layer groups ['conv9']"),
    (["strategy=head_only", "strategy.bn=sometimes"], "strategy.bn='sometimes'"),
    (["strategy=full_unfreeze", "strategy.lr_mult=0.5"], "strategy.lr_mult=0.5"),
    (
        ["strategy=head_only", "model.groups=[{name: all, modules: [conv1, conv2, fc1, head]}]"],
        "one layer group",
    ),
    # config: the adaptive and partial strategies (issue 17)
    (["strategy=llrd", "strategy.gamma=0"], "strategy.gamma=0 must be a number > 0.0 and <= 1.0"),
    (["strategy=llrd", "strategy.gamma=1.25"], "strategy.gamma=1.25"),
    (["strategy=l2sp", "strategy.alpha=-0.1"], "strategy.alpha=-0.1 must be a number >= 0.0"),
    (["strategy=l2sp", "strategy.beta=-1"], "strategy.beta=-1 must be a number >= 0.0"),
    (["strategy=freezeout", "strategy.t0=1"], "strategy.t0=1 must be a number >= 0.0 and < 1.0"),
    (["strategy=freezeout", "strategy.t0=-0.5"], "strategy.t0=-0.5"),
    (["strategy=autofreeze", "strategy.percentile=0"], "strategy.percentile=0 must be a number > 0.0"),
    (["strategy=autofreeze", "strategy.percentile=100"], "strategy.percentile=100"),
    (["strategy=autofreeze", "strategy.interval=0"], "strategy.interval=0 must be an integer >= 1"),
    (["strategy=auto_rgn", "strategy.interval=0"], "strategy.interval=0 must be an integer >= 1"),
    (["strategy=bitfit", "strategy.bn=eval"], "bitfit trains the norm-layer parameters"),
    (["strategy=lp_ft"], "strategy=lp_ft needs a pretrained start"),
    (["strategy=l2sp"], "strategy=l2sp needs a pretrained start"),
    (["split=random_half", "half=B", "init.base=C"], "init.base='C' is not a half to start from"),
    (["split=random_half", "init.base=A"], "set half=B"),
    (["split=random_half", "half=A", "init.base=A"], "set half=B"),
    (["split=random_half", "half=B", "init.base=A", "init.from=x.pt"], "both name a start"),
    # config: contradictory options
    (["half=A"], "split"),
    (["split=classes", "split.A=[0,1]", "split.B=[1,2]", "half=B"], "overlap"),
    (GRID + ["transfer.n=9"], "transfer.n=9 is out of range"),
    (GRID + ["transfer.treatment=CnB"], "transfer.treatment='CnB'"),
    # data
    (["data.val_fraction=1.5"], "data.val_fraction=1.5"),
    (["data.train_fraction=0"], "data.train_fraction=0"),
    (["split=classes", "split.A=[0]", "split.B=[]", "half=B"], "split.B is empty"),
    (["split=classes", "split.A=[0]", "split.B=[42]", "half=B"], "42"),
    (["split=random_half", "split.b_domain=blur", "half=B"], "split.b_domain='blur'"),
    (["data=imagefolder", "data.root=/nonexistent/images"], "/nonexistent/images"),
    (["data=imagefolder", "data.root=EMPTY_CLASS"], "has no images"),
    (["data=imagefolder", "data.root=CORRUPT"], "broken.png"),
    (["data=cifar10", "data.root=/nonexistent/cifar"], "/nonexistent/cifar"),
    # models and checkpoints
    (["model.kernel_size=4"], "model.kernel_size"),
    (["model.dropout=1.5"], "model.dropout"),
    (["init.from=/nonexistent.pt"], "checkpoint '/nonexistent.pt' does not exist"),
    (["init.from=TRUNCATED"], "is unreadable"),
    (["init.from=OTHER_ARCH", "init.groups=2"], "has shape"),
    (["init.from=OLD_VERSION"], "has version 0"),
    # storage (the command line's own entries, a search's database included, are in STORAGE below)
    (
        ["checkpoint.dir=/sys/freezelab-checkpoints"],
        "checkpoint.dir: cannot write to '/sys/freezelab-checkpoints'",
    ),
    (
        GRID + ["transfer.treatment=AnB", "transfer.n=1", "transfer.cache_dir=/sys/freezelab-bases"],
        "transfer.cache_dir: cannot write to '/sys/freezelab-bases'",
    ),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    for cls in ("a", "b"):
        (root / "empty_class" / cls).mkdir(parents=True)
        (root / "corrupt" / cls).mkdir(parents=True)
        Image.new("L", (8, 8)).save(root / "corrupt" / cls / "ok.png")
    Image.new("L", (8, 8)).save(root / "empty_class" / "a" / "0.png")
    (root / "corrupt" / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    good = {"conv1.0.weight": torch.zeros(3, 1, 3, 3), "conv1.0.bias": torch.zeros(3)}
    torch.save({"version": 1, "model": good}, root / "other_arch.pt")
    (root / "truncated.pt").write_bytes((root / "other_arch.pt").read_bytes()[:100])
    torch.save({"version": 0, "model": good}, root / "old.pt")
    return {
        "EMPTY_CLASS": root / "empty_class",
        "CORRUPT": root / "corrupt",
        "OTHER_ARCH": root / "other_arch.pt",
        "TRUNCATED": root / "truncated.pt",
        "OLD_VERSION": root / "old.pt",
    }


def substitute(overrides, files):
    out = []
    for item in overrides:
        for key, path in files.items():
            item = item.replace(key, str(path))
        out.append(item)
    return out


def test_the_catalogue_is_large_enough():
    assert len(CATALOGUE) >= 25


@pytest.mark.parametrize("overrides, expected", CATALOGUE, ids=[" ".join(o) for o, _ in CATALOGUE])
def test_bad_input_is_one_clear_line_before_training(make_cfg, tmp_path, files, overrides, expected):
    cfg = make_cfg(substitute(overrides, files))
    with pytest.raises(ConfigError) as caught:
        train(cfg, tmp_path / "run")
    message = str(caught.value)
    assert expected in message and "\n" not in message
    assert not list(tmp_path.rglob("result.json"))  # nothing that looks finished
    assert not list((tmp_path / "outputs").rglob("last.pt"))  # and no training started


@pytest.mark.parametrize(
    "overrides", [["data=imagenet"], ["model=vgg99"], ["strategy=sometimes"], ["optim=lion"]]
)
def test_unknown_group_options_fail_at_composition(make_cfg, overrides):
    with pytest.raises(HydraException, match="Could not find"):
        make_cfg(overrides)


def test_an_unwritable_output_folder_is_refused_before_training(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match="the run's output folder: cannot write to '/sys/freezelab-run'"):
        train(make_cfg(), "/sys/freezelab-run")
    assert not list(tmp_path.rglob("last.pt"))


NOT_A_DATABASE = "NOT_A_DATABASE"
STORAGE = [
    (
        ["paths.output_root=/sys/freezelab-outputs"],
        "paths.output_root: cannot write to '/sys/freezelab-outputs'",
    ),
    (["-m", "seed=0,1", "paths.output_root=/sys/freezelab-outputs"], "paths.output_root: cannot write to"),
    (["checkpoint.dir=/sys/freezelab-ckpt"], "checkpoint.dir: cannot write to '/sys/freezelab-ckpt'"),
    (
        ["-m", "search=finetune_lr", "search.storage='postgresql+psycopg://me:hunter2@127.0.0.1:1/nodb'"],
        "search.storage='postgresql+psycopg://me:***@127.0.0.1:1/nodb' cannot be opened: connection failed",
    ),
    (
        ["-m", "search=finetune_lr", "search.storage='sqlite:////sys/freezelab/study.db'"],
        "cannot create its folder /sys/freezelab",
    ),
    (["-m", "search=finetune_lr", f"search.storage='sqlite:///{NOT_A_DATABASE}'"], "file is not a database"),
    (["-m", "search=finetune_lr", "search.storage='mysql://me@127.0.0.1:1/db'"], "no database driver"),
]


@pytest.mark.parametrize("overrides, expected", STORAGE, ids=[" ".join(o) for o, _ in STORAGE])
def test_storage_that_cannot_be_written_or_reached_is_one_line_and_exit_2(tmp_path, overrides, expected):
    import subprocess
    import sys

    from conftest import REPO, TINY

    junk = tmp_path / "junk.db"
    junk.write_text("these are not the tables you are looking for\n" * 100)
    overrides = [o.replace(NOT_A_DATABASE, str(junk)) for o in overrides]
    root = (
        [] if any(o.startswith("paths.output_root") for o in overrides) else [f"paths.output_root={tmp_path}"]
    )
    flags = [o for o in overrides if o == "-m"]  # Hydra's flags come before the overrides
    overrides = [o for o in overrides if o != "-m"]
    done = subprocess.run(
        [sys.executable, "-m", "harness.train", *flags, *TINY, *root, *overrides],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], done.stderr
    assert "hunter2" not in done.stdout + done.stderr  # a password never reaches a log
    assert not list(tmp_path.rglob("result.json")) and not list(tmp_path.rglob("last.pt"))
