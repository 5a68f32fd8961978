"""The bad-input catalogue: every entry is rejected before training with one line naming the key or path.

CATALOGUE holds what a new user tries and the checks that need context (data, model, files); KEYS has at least
one case for every key of the schema (harness/config/schema.py: test_every_key_has_a_bad_input_case). Both
run through train(), so the whole path before training is exercised. The command line's side of it (exit code
2, no traceback) is in tests/test_cli.py, and here for what only the command line has: Hydra's own composition
errors, multiruns, storage. /sys stands for a read-only folder: even root cannot create anything there.
"""

import copy
import functools

import pytest
import torch
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, open_dict
from PIL import Image

from harness.config import schema
from harness.errors import ConfigError
from harness.train import train
from tests.conftest import CONF, TINY, compose_config

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
    # what a new user tried: each was accepted silently or ended in a traceback
    (["best_k=0"], "best_k=0 must be an integer >= 1"),  # was a ZeroDivisionError after training, no record
    (["schedule.pct_start=abc"], "schedule.pct_start='abc' must be a number"),  # was a ValueError traceback
    (
        ["schedule=step", "schedule.gamma=null"],
        "schedule.gamma=None must be a number",
    ),  # was a TypeError mid-run
    (["lr=true"], "lr=True must be a number > 0"),  # trained at lr 1.0
    (["+epoch=3"], "epoch is not a key of the config; did you mean epochs?"),  # trained a duplicate
    (
        ["strategy=freeze_to", "+strategy.kk=2"],
        "strategy.kk is not a key of strategy 'freeze_to'; did you mean k?",
    ),
    # a treatment's own keys, all before its bases train
    (GRID + ["transfer.bn=sometimes"], "transfer.bn='sometimes' is not a BatchNorm policy"),
    (GRID + ["transfer.plus_lr={lo:1,hi:0.1}"], "transfer.plus_lr: lo=1 is greater than hi=0.1"),
    (GRID + ["transfer.epochs=0"], "transfer.epochs=0 must be an integer >= 1"),
    (GRID + ["strategy=freeze_to", "strategy.k=abc"], "strategy.k='abc' must be an integer"),
    (GRID + ["strategy=gradual", "strategy.every=0"], "strategy.every=0 must be an integer >= 1"),
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
    (["strategy=lp_ft", "strategy.patience=0"], "strategy.patience=0 must be an integer >= 1"),
    (["strategy=lp_ft", "strategy.probe_epochs=0"], "strategy.probe_epochs=0 must be an integer >= 1"),
    (["strategy=lp_ft", "strategy.probe_lr=-1"], "strategy.probe_lr=-1 must be a number > 0"),
    (
        ["strategy=freezeout", "strategy.scaling=square"],
        "strategy.scaling='square' is not a FreezeOut scaling",
    ),
    (["strategy=freezeout", "strategy.scale_lr=1"], "strategy.scale_lr=1 must be true or false"),
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
    import timm
    import torchvision

    torch.save(torchvision.models.resnet34(weights=None).state_dict(), root / "tv_resnet34.pt")
    torch.save(timm.create_model("test_vit").state_dict(), root / "timm_vit.pt")
    return {
        "TV_RESNET34": root / "tv_resnet34.pt",
        "TIMM_VIT": root / "timm_vit.pt",
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
    assert_nothing_trained(tmp_path)


def assert_nothing_trained(tmp_path):
    assert not list(tmp_path.rglob("result.json"))  # nothing that looks finished
    assert not list((tmp_path / "outputs").rglob("last.pt"))  # and no training started
    assert not list((tmp_path / "outputs" / "bases").glob("*"))  # not even a base of a treatment


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


@pytest.mark.slow
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


# --- every key of the schema ------------------------------------------------------------------------------
# One case (at least) per key of every section, and per section one key that is not there (a typo, or a key
# added with `+`). FOLDER stands for an empty folder that exists.

TREATMENT = GRID + ["transfer.treatment=AnB"]
KEYS = [
    # top level
    (["experiment_name=2024"], "experiment_name=2024 must be a non-empty string (quote it"),
    (["seed=-1"], "seed=-1 must be an integer >= 0"),
    (["half=C"], "half='C' is not allowed; choose one of: null, A, B"),
    (["epochs=2.5"], "strategy.epochs=2.5 must be an integer >= 1"),
    (
        ["strategy=full_unfreeze", "lr=fast"],
        "lr='fast' must be a number > 0",
    ),  # no strategy.lr to say it first
    (["batch_size=abc"], "batch_size='abc' must be an integer >= 1"),
    (["test_every_epoch=2"], "test_every_epoch=2 must be true or false"),
    (["best_k=-3"], "best_k=-3 must be an integer >= 1"),
    (["device=gpu"], "device='gpu' is not a device; use auto, cpu, cuda or cuda:N"),
    (["deterministic=yes"], "deterministic='yes' must be true or false"),
    (["threads=1.5"], "threads=1.5 must be an integer >= 1 or auto"),
    (["progress=1"], "progress=1 must be true or false"),
    (["prefix_cache=maybe"], "prefix_cache='maybe' must be true or false"),
    (["resume=0"], "resume=0 must be true or false"),
    (["+learning_rate=0.1"], "learning_rate is not a key of the config"),
    # speed, init, checkpoint, diagnostics, paths, trial, lr_find
    (["speed.precision=16"], "speed.precision='16' is not a precision"),
    (["speed.channels_last=1"], "speed.channels_last=1 must be true or false"),
    (["speed.compile=yes"], "speed.compile='yes' must be true or false"),
    (["+speed.amp=true"], "speed.amp is not a key of speed; its keys: channels_last, compile, precision"),
    (["init.from=5"], "init.from=5 must be a non-empty string"),
    (["init.groups=all"], "init.groups='all' must be an integer"),
    (["+init.strict=true"], "init.strict is not a key of init"),
    (["checkpoint.save=1"], "checkpoint.save=1 must be true or false"),
    (["checkpoint.dir=null"], "checkpoint.dir=None must be a non-empty string"),
    (["+checkpoint.every=2"], "checkpoint.every is not a key of checkpoint"),
    (["diagnostics.weights=on"], "diagnostics.weights='on' must be true or false"),
    (["diagnostics.cka=1"], "diagnostics.cka=1 must be true or false"),
    (["diagnostics.probe_size=1"], "diagnostics.probe_size=1 must be an integer >= 2"),
    (["+diagnostics.cka_size=9"], "diagnostics.cka_size is not a key of diagnostics"),
    (["paths.output_root=null"], "paths.output_root=None must be a non-empty string"),
    (["+paths.data=/data"], "paths.data is not a key of paths; its keys: output_root"),
    (["trial.number=-1"], "trial.number=-1 must be an integer >= 0"),
    (["trial.study=5"], "trial.study=5 must be a non-empty string"),
    (["trial.storage=5"], "trial.storage=5 must be a non-empty string"),
    (["+trial.id=3"], "trial.id is not a key of trial"),
    (["lr_find.start_lr=0"], "lr_find.start_lr=0 must be a number > 0"),
    (["lr_find.end_lr=abc"], "lr_find.end_lr='abc' must be a number > 0"),
    (["lr_find.num_it=1"], "lr_find.num_it=1 must be an integer >= 2"),
    (["lr_find.stop_div=1"], "lr_find.stop_div=1 must be true or false"),
    (["lr_find.keep_ratios=yes"], "lr_find.keep_ratios='yes' must be true or false"),
    (["init_seed=-2"], "init_seed=-2 must be an integer >= 0"),
    (["early_stopping.patience=0"], "early_stopping.patience=0 must be an integer >= 1"),
    (["early_stopping.reductions=abc"], "early_stopping.reductions='abc' must be an integer >= 0"),
    (["early_stopping.factor=1"], "early_stopping.factor=1 must be a number > 0 and < 1"),
    (["+early_stopping.monitor=val_loss"], "early_stopping.monitor is not a key of early_stopping"),
    (["optim.wd_bn_bias=0"], "optim.wd_bn_bias=0 must be true or false"),
    (["+lr_find.numit=50"], "lr_find.numit is not a key of lr_find; did you mean num_it?"),
    # data: every dataset's split of its images, then each source's own keys
    (["data.name=imagenet"], "data.name='imagenet' is not a dataset"),
    (["data.seed=-1"], "data.seed=-1 must be an integer >= 0"),
    (["data.val_fraction=abc"], "data.val_fraction='abc' must be a number >= 0 and < 1"),
    (["data.test_fraction=1"], "data.test_fraction=1 must be a number >= 0 and < 1"),
    (["data.train_fraction=2"], "data.train_fraction=2 must be a number >= 0 and <= 1"),
    (["data.num_classes=1"], "data.num_classes=1 must be an integer >= 2"),
    (["data.per_class=abc"], "data.per_class='abc' must be an integer >= 3"),
    (["data.image_size=2"], "data.image_size=2 must be an integer >= 4"),
    (["data.channels=0"], "data.channels=0 must be an integer >= 1"),
    (["data.noise=-1"], "data.noise=-1 must be a number >= 0"),
    (["data.pattern_seed=x"], "data.pattern_seed='x' must be an integer >= 0"),
    (["data=imagefolder", "data.root=null"], "data.root is not set; imagefolder needs a folder"),
    (
        ["data=imagefolder", "data.root=FOLDER", "data.image_size=0"],
        "data.image_size=0 must be an integer >= 1",
    ),
    (
        ["data=imagefolder", "data.root=FOLDER", "data.channels=2"],
        "data.channels=2 is not 1 (grey) or 3 (RGB)",
    ),
    (["data=imagefolder", "data.root=FOLDER", "data.max_in_memory=-1"], "data.max_in_memory=-1 must be"),
    (["data.normalize=imagenet"], "data.normalize='imagenet' is not a normalisation"),
    (["data.augment=mixup"], "data.augment='mixup' is not an augmentation preset"),
    (["data=imagefolder", "data.root=FOLDER", "data.workers=-1"], "data.workers=-1 must be an integer >= 0"),
    (["data=imagefolder", "data.root=FOLDER", "data.cache=5"], "data.cache=5 must be a non-empty string"),
    (
        ["data=imagefolder", "data.root=FOLDER", "data.bad_images=ignore"],
        "data.bad_images='ignore' is not what to do with unreadable images",
    ),
    (["data=cifar10", "data.root=null"], "data.root=None must be a non-empty string"),
    (["data=cifar100", "data.download=yes"], "data.download='yes' must be true or false"),
    (
        ["data=digits", "+data.noise=2"],
        "data.noise is not a key of data 'digits' (noise belongs to data=synthetic)",
    ),
    # split
    (["split.name=thirds"], "split.name='thirds' is not a split"),
    (["split=random_half", "split.seed=-1"], "split.seed=-1 must be an integer >= 0"),
    (["split=mnist_dissimilar", "split.b_domain=flip"], "split.b_domain='flip' is not a transform of half B"),
    (["split=classes", "split.A=3"], "split.A=3 must be a list of class ids or names"),
    (["split=classes", "split.B=cat"], "split.B='cat' must be a list of class ids or names"),
    (
        ["split=cifar100_manmade_natural", "split.A_superclasses=vehicles_1"],
        "split.A_superclasses='vehicles_1' must be a list of CIFAR-100 superclasses",
    ),
    (["+split.seed=1"], "split.seed is not a key of split 'all' (seed belongs to split=random_half"),
    # model
    (["model.name=vgg"], "model.name='vgg' is not a model"),
    (["model.channels=[8,0]"], "model.channels[1]=0 must be an integer >= 1"),
    (["model.kernel_size=0"], "model.kernel_size=0 must be an odd integer >= 1"),
    (["model.pool=[yes,no]"], "model.pool[0]='yes' must be true or false"),
    (["model.hidden=16"], "model.hidden=16 must be a list of integers >= 1"),
    (["model.batchnorm=1"], "model.batchnorm=1 must be true or false"),
    (["model.dropout=-0.5"], "model.dropout=-0.5 must be a number >= 0 and < 1"),
    (
        ["model.groups=[{name:all}]"],
        "model.groups[0]={'name': 'all'} must be {name: ..., modules: [module, ...]}",
    ),
    (["model=resnet18", "model.split=fastai4"], "model.split='fastai4' is not a split of a ResNet"),
    (["model=resnet34", "model.weights=5"], "model.weights=5 must be a non-empty string"),
    (["model=resnet50", "model.groups=body"], "model.groups='body' must be null or a non-empty list"),
    (["model=custom", "model.net=abc"], "model.net must be a mapping with '_target_'"),
    (["model=resnet18", "model.download=yes"], "model.download='yes' must be true or false"),
    (["model=timm", "model.arch=5"], "model.arch=5 must be a non-empty string"),
    (["model=timm", "model.split=medium"], "model.split='medium' is not a split of timm's group_matcher"),
    (["model=timm", "model.pretrained=1"], "model.pretrained=1 must be true or false"),
    (["model=timm", "model.weights=5"], "model.weights=5 must be a non-empty string"),
    (["model=timm", "model.download=1"], "model.download=1 must be true or false"),
    (["model=timm", "model.drop_rate=1"], "model.drop_rate=1 must be a number >= 0 and < 1"),
    (["model=timm", "model.groups=body"], "model.groups='body' must be null or a non-empty list"),
    (
        ["model=custom", "model.head=null"],
        "model.head=None must be the qualified name of the final nn.Linear",
    ),
    (["+model.chanels=[8]"], "model.chanels is not a key of model 'convnet'; did you mean channels?"),
    (["model=resnet18", "+model.channels=[8]"], "model.channels is not a key of model 'resnet18'"),
    # strategy
    (["strategy.name=sometimes"], "strategy.name='sometimes' is not a strategy"),
    (["strategy=head_only", "strategy.epochs=0"], "strategy.epochs=0 must be an integer >= 1"),
    (["strategy.optimizer_state=drop"], "strategy.optimizer_state='drop' is not an optimizer-state policy"),
    (["strategy=surgical", "strategy.lr=[abc]"], "strategy.lr[0]='abc' must be a number > 0"),
    (
        ["strategy=full_unfreeze", "strategy.freeze_epochs=-1"],
        "strategy.freeze_epochs=-1 must be an integer >= 0",
    ),
    (["strategy=full_unfreeze", "strategy.base_lr=abc"], "strategy.base_lr='abc' must be a number > 0"),
    (
        ["strategy=full_unfreeze", "strategy.pct_start=0"],
        "strategy.pct_start=0 must be a number > 0 and <= 1",
    ),
    (["strategy=full_unfreeze", "strategy.div=0"], "strategy.div=0 must be a number > 0"),
    (
        ["strategy=surgical", "strategy.groups=head"],
        "strategy.groups='head' must be a list of layer group names",
    ),
    (["strategy.name=freeze_to"], "strategy.k is missing; strategy 'freeze_to' needs it (select it with"),
    (["+strategy.k=2"], "strategy.k is not a key of strategy 'never' (k belongs to strategy=freeze_to)"),
    (["strategy=full_unfreeze", "+strategy.lr=1e-3"], "strategy.lr is not a key of strategy 'full_unfreeze'"),
    # optim
    (["optim.fused=yes"], "optim.fused='yes' must be true or false"),
    (["optim.betas=[0.9]"], "optim.betas=[0.9] must be a list of 2 values"),
    (["optim.eps=0"], "optim.eps=0 must be a number > 0"),
    (["optim=sgd", "optim.momentum=-0.9"], "optim.momentum=-0.9 must be a number >= 0"),
    (["optim=sgd", "optim.nesterov=1"], "optim.nesterov=1 must be true or false"),
    (["optim=sgd", "optim.weight_decay=abc"], "optim.weight_decay='abc' must be a number >= 0"),
    (["+optim.amsgrad=true"], "optim.amsgrad is not a key of optim 'adamw'"),
    # schedule
    (["schedule.div=0"], "schedule.div=0 must be a number > 0"),
    (["schedule.div_final=-1"], "schedule.div_final=-1 must be a number > 0"),
    (["schedule.moms=[0.95,0.85]"], "schedule.moms=[0.95, 0.85] must be a list of 3 values"),
    (["schedule=step", "schedule.step_size=0"], "schedule.step_size=0 must be an integer >= 1"),
    (
        ["+schedule.gamma=0.5"],
        "schedule.gamma is not a key of schedule 'one_cycle' (gamma belongs to schedule=step)",
    ),
    # logger
    (["logger.name=tensorboard"], "logger.name='tensorboard' is not a logger"),
    (["logger=wandb", "logger.project=null"], "logger.project=None must be a non-empty string"),
    (["logger=wandb", "logger.group=5"], "logger.group=5 must be a non-empty string"),
    (["logger=wandb", "logger.job_type=5"], "logger.job_type=5 must be a non-empty string"),
    (["logger=wandb", "logger.run_name=5"], "logger.run_name=5 must be a non-empty string"),
    (["logger=wandb", "logger.tags=abc"], "logger.tags='abc' must be a list of strings"),
    (["logger=wandb", "logger.dir=null"], "logger.dir=None must be a non-empty string"),
    (["logger=wandb", "+logger.entity=me"], "logger.entity is not a key of logger 'wandb'"),
    (["+logger.mode=offline"], "logger.mode is not a key of logger 'none' (mode belongs to logger=wandb)"),
    # transfer: a treatment's keys, before any of its bases trains
    (TREATMENT + ["transfer.n=abc"], "transfer.n='abc' must be an integer"),
    (TREATMENT + ["transfer.base_epochs=0"], "transfer.base_epochs=0 must be an integer >= 1"),
    (TREATMENT + ["transfer.base_epochs=sometimes"], "transfer.base_epochs='sometimes' must be an integer"),
    (TREATMENT + ["transfer.patience=0"], "transfer.patience=0 must be an integer >= 1"),
    (TREATMENT + ["transfer.reductions=-1"], "transfer.reductions=-1 must be an integer >= 0"),
    (TREATMENT + ["transfer.max_epochs=0.5"], "transfer.max_epochs=0.5 must be an integer >= 1"),
    (TREATMENT + ["transfer.base_seed=-1"], "transfer.base_seed=-1 must be an integer >= 0"),
    (TREATMENT + ["transfer.plus_lr=-1"], "transfer.plus_lr=-1 must be a number > 0"),
    (
        GRID + ["transfer.treatment=warm", "transfer.warm_fraction=0"],
        "transfer.warm_fraction=0 must be a number > 0",
    ),
    (TREATMENT + ["transfer.cache_dir=null"], "transfer.cache_dir=None must be a non-empty string"),
    (TREATMENT + ["+transfer.n_layers=3"], "transfer.n_layers is not a key of transfer with treatment=AnB"),
    (
        ["+transfer.n=2"],
        "transfer.n is not a key of transfer with treatment=null (n belongs to transfer=yosinski",
    ),
    (["transfer.treatment=AnB"], "transfer.n is missing; transfer with treatment=AnB needs it"),
]

# Config groups: an override `group=option` picks a YAML file (composed by Hydra); any other sets a key.
GROUPS = {p.name for p in CONF.iterdir() if p.is_dir()}
PARSER = OverridesParser.create()


@functools.cache
def composed(groups: tuple[str, ...]) -> DictConfig:
    # The tiny base with another model would keep the convnet's model.* keys: without them then.
    base = (
        [o for o in TINY if not o.startswith("model")]
        if any(g.startswith("model=") for g in groups)
        else TINY
    )
    return compose_config(base + list(groups), tiny=False)


def key_config(overrides: list[str], root) -> DictConfig:
    """``compose_config(overrides)``, with each set of group choices composed once (Hydra's composition is the
    slow part, ~0.3 s) and the key overrides applied after it by Hydra's own parser and override step, as a
    composition applies them: the config the command line would give, in milliseconds."""
    groups = tuple(o for o in overrides if o.split("=", 1)[0] in GROUPS)
    cfg = copy.deepcopy(composed(groups))
    with open_dict(cfg):
        cfg.paths.output_root = str(root)
    keys = PARSER.parse_overrides([o for o in overrides if o not in groups])
    ConfigLoaderImpl._apply_overrides_to_config(keys, cfg)
    return cfg


# Pretrained backbones, augmentation, image folders (issue 16): checks that need the model, its weights or the
# images. Composed as KEYS are (another model than the tiny convnet), with the catalogue's files.
WORKLOADS = [
    (
        ["model=resnet18", "model.weights=IMAGENET1K_V9"],
        "model.weights=IMAGENET1K_V9 is not a weights name of resnet18; its names: IMAGENET1K_V1, DEFAULT",
    ),
    (
        ["model=resnet18", "model.weights=TV_RESNET34"],
        "does not match the model: key 'layer1.2.conv1.weight'",
    ),
    (["model=timm", "model.arch=test_resnett"], "model.arch=test_resnett is not a timm model; did you mean"),
    (["model=timm", "model.weights=TIMM_VIT"], "do not match model.arch=test_resnet"),
    (["model=timm", "model.arch=test_convnext"], "model.arch=test_convnext does not accept 1x12x12 input"),
    (["data.augment=rrc_flip_rotate"], "data.augment=rrc_flip_rotate crops each image as it is decoded"),
    (["data.normalize=weights"], "data.normalize=weights, but the model brings no preprocessing"),
    (["data=imagefolder", "data.root=CORRUPT"], "1 of 3 images cannot be read, so the run stops"),
    (["data=imagefolder", "data.root=CORRUPT", "data.max_in_memory=0"], "cannot be read, so the run stops"),
]


@pytest.mark.parametrize("overrides, expected", WORKLOADS, ids=[" ".join(o) for o, _ in WORKLOADS])
def test_workload_bad_input_is_one_line_before_training(tmp_path, files, overrides, expected):
    cfg = key_config(substitute(overrides, files), tmp_path / "outputs")
    with pytest.raises(ConfigError) as caught:
        train(cfg, tmp_path / "run")
    message = str(caught.value)
    assert expected in message and "\n" not in message, message
    assert_nothing_trained(tmp_path)


@pytest.mark.parametrize("overrides, expected", KEYS, ids=[" ".join(o) for o, _ in KEYS])
def test_every_key_is_checked_before_training(tmp_path, overrides, expected):
    folder = tmp_path / "empty_folder"
    folder.mkdir()
    cfg = key_config([o.replace("FOLDER", str(folder)) for o in overrides], tmp_path / "outputs")
    with pytest.raises(ConfigError) as caught:
        train(cfg, tmp_path / "run")
    message = str(caught.value)
    assert expected in message and "\n" not in message, message
    assert_nothing_trained(tmp_path)


def schema_keys(section: schema.Section = schema.CONFIG) -> set[str]:
    """Every key path of the schema, every variant's keys included: ``data.noise``, ``seed``, ..."""
    found = set()
    for keys in [section.keys, *section.variants.values()] + ([{section.by: None}] if section.by else []):
        for key, spec in keys.items():
            if isinstance(spec, schema.Section):
                found |= schema_keys(spec)
            elif spec is not schema.OWNED or key == section.by:
                found.add(section.path(key))
    return found


def case_keys(cases) -> set[str]:
    """The keys that cases set with a key override (``data.seed=-1``, ``+lr_find.stop_div=1``)."""
    return {o.lstrip("+~").split("=", 1)[0] for overrides, _ in cases for o in overrides if "=" in o}


def test_every_key_has_a_bad_input_case():
    missing = schema_keys() - case_keys(CATALOGUE + KEYS + CLI)
    assert not missing, f"keys of harness/config/schema.py without a bad-input case: {sorted(missing)}"
    assert len(schema_keys()) > 100  # the walk found the sections (and their variants)


# --- the command line: Hydra's composition errors, and the schema in a multirun ------------------------------
# One subprocess each (~3 s): grouped so that each shows one more thing.

CLI = [
    # a mistyped key: Hydra refuses it (it suggested +epoch=3, which trained a duplicate); our words, exit 2
    (["epoch=3"], "epoch is not a key of the config; did you mean epochs?"),
    (["+epoch=3"], "epoch is not a key of the config; did you mean epochs?"),
    (["strategy.k=2"], "strategy.k is not a key of strategy 'never' (k belongs to strategy=freeze_to)"),
    (
        ["strategy=head-only"],
        "Could not find 'strategy/head-only' (did you mean strategy=head_only?). "
        "Available options in 'strategy': auto_rgn, autofreeze, bitfit, freeze_to, freezeout, full_unfreeze, gradual, head_only, l2sp, llrd, lp_ft, never, surgical",
    ),
    (["lr=[1e-3,"], "cannot parse the override 'lr=[1e-3,'"),
    # in a multirun: Hydra's error when the first job is composed; the schema's on the shared keys at once
    (["-m", "epoch=3,4"], "epoch is not a key of the config; did you mean epochs?"),
    (["-m", "+epoch=3", "seed=0,1"], "epoch is not a key of the config; did you mean epochs?"),
    # the LR finder composes the same config
    (["LR_FIND", "epoch=3"], "epoch is not a key of the config; did you mean epochs?"),
    (
        ["LR_FIND", "strategy=head-only"],
        "Could not find 'strategy/head-only' (did you mean strategy=head_only?)",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("overrides, expected", CLI, ids=[" ".join(o) for o, _ in CLI])
def test_hydra_errors_and_unknown_keys_are_one_line_and_exit_2(tmp_path, overrides, expected):
    import subprocess
    import sys

    from conftest import REPO

    module = "harness.lr_find" if overrides[0] == "LR_FIND" else "harness.train"
    overrides = [o for o in overrides if o != "LR_FIND"]
    flags = [o for o in overrides if o == "-m"]
    overrides = [o for o in overrides if o != "-m"]
    done = subprocess.run(
        [sys.executable, "-m", module, *flags, *TINY, f"paths.output_root={tmp_path}", *overrides],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], done.stderr
    assert not list(tmp_path.rglob("result.json")) and not list(tmp_path.rglob("last.pt"))


@pytest.mark.slow
def test_a_multirun_job_the_schema_rejects_writes_a_failed_record_and_the_sweep_goes_on(tmp_path):
    import json
    import subprocess
    import sys

    from conftest import REPO

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.train",
            "-m",
            *TINY,
            f"paths.output_root={tmp_path}",
            "lr=true,false",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.splitlines() == [
        "error: strategy.lr=True must be a number > 0",
        "error: strategy.lr=False must be a number > 0",
    ]
    records = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("multirun/*/*/*/result.json"))]
    assert [(r["status"], r["reason"]) for r in records] == [
        ("failed", "ConfigError: strategy.lr=True must be a number > 0"),
        ("failed", "ConfigError: strategy.lr=False must be a number > 0"),
    ]
    assert not list(tmp_path.rglob("last.pt"))
