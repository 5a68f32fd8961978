"""The schema of the config (harness/config/schema.py) and the command line's handling of Hydra's errors
(harness/config/cli.py). Each key's own bad-input case is in tests/test_bad_input.py."""

import os

import pytest
import torch
from hydra.errors import ConfigCompositionException, OverrideParseException
from omegaconf import OmegaConf, open_dict

from harness.config import cli, schema
from harness.data.sources import LOADERS
from harness.data.splits import SPLITS
from harness.engine.optim import build_optimizer
from harness.errors import ConfigError
from harness.models import BUILDERS
from harness.plan.freezing import GroupParams
from harness.plan.strategies import COMPILERS
from harness.transfer.treatments import TREATMENTS
from tests.conftest import CONF, compose_config

# section -> its config group folder and the registry of the code that reads it
REGISTRIES = {
    "data": LOADERS,
    "split": SPLITS,
    "model": BUILDERS,
    "strategy": COMPILERS,
    "optim": None,
    "schedule": None,
    "logger": None,
}


@pytest.mark.parametrize("section", REGISTRIES)
def test_the_schema_has_every_option_of_every_group(section):
    variants = set(schema.SECTIONS[section].variants)
    assert variants == {p.stem for p in (CONF / section).glob("*.yaml")}
    if REGISTRIES[section] is not None:
        assert variants == set(REGISTRIES[section])


def test_the_schema_has_every_treatment():
    assert set(schema.TREATMENTS) == set(TREATMENTS)
    assert set(schema.TRANSFER.variants) == {None, *TREATMENTS}


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_every_optimizer_of_the_schema_is_built(name):
    params = [GroupParams("head", [], [torch.nn.Parameter(torch.zeros(2))])]
    optimizer = build_optimizer(OmegaConf.load(CONF / "optim" / f"{name}.yaml"), params, [1e-3])
    assert type(optimizer).__name__.lower() == name


@pytest.fixture(scope="module")
def default_config():
    return compose_config([])


def with_section(cfg, section, option, tmp_path):
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg[section] = OmegaConf.load(CONF / section / f"{option}.yaml")
        if section == "data" and option == "imagefolder":
            cfg.data.root = str(tmp_path)  # the one key its YAML leaves to the user
    return cfg


@pytest.mark.parametrize(
    "section, option",
    [(s, p.stem) for s in [*REGISTRIES, "transfer"] for p in sorted((CONF / s).glob("*.yaml"))],
)
def test_every_key_of_every_yaml_is_known_and_allowed(default_config, tmp_path, section, option):
    # A key in conf/ that the schema does not know is one that no code reads (or the schema lacks it).
    schema.check_config(with_section(default_config, section, option, tmp_path))


@pytest.mark.parametrize(
    "preset",
    [
        ["experiment=transferability_quick"],
        ["experiment=transferability"],
        ["experiment=warm_start"],
        ["search=finetune_lr"],
        ["search=strategy"],
        ["search=transfer"],
        ["launcher=slurm"],
    ],
)
def test_every_preset_passes_the_schema(preset):
    schema.check_config(compose_config(preset))


def test_values_only_leaves_missing_and_unknown_keys_to_the_caller():
    # What the modules check on their own section (a generated config may leave keys to their defaults).
    assert schema.check_values("schedule", {"name": "one_cycle"}) == {"name": "one_cycle"}
    schema.check_values("strategy", {"name": "never", "epochs": 1, "extra": 1})
    with pytest.raises(ConfigError, match="strategy.extra is not a key of strategy 'never'"):
        schema.check_values("strategy", {"name": "never", "extra": 1}, unknown=True)
    with pytest.raises(ConfigError, match="strategy.lr is missing; strategy 'never' needs it"):
        schema.check_values(
            "strategy", {"name": "never", "epochs": 1, "bn": "train", "optimizer_state": "keep"}, missing=True
        )


def test_a_value_that_cannot_be_resolved_names_its_key():
    cfg = OmegaConf.create({"data": {"name": "synthetic", "seed": "${nowhere}"}})
    with pytest.raises(
        ConfigError, match=r"^data.seed cannot be read: Interpolation key 'nowhere' not found$"
    ):
        schema.check_values("data", cfg.data)


def test_booleans_are_not_numbers_and_strings_are_not_numbers():
    for bad in (True, "3", None):
        with pytest.raises(ConfigError, match="must be an integer"):
            schema.integer(low=1)(bad, "epochs")
        with pytest.raises(ConfigError, match="must be a number"):
            schema.number(above=0)(bad, "lr")
    with pytest.raises(ConfigError, match="is not 1 \\(grey\\) or 3 \\(RGB\\)"):
        schema.SECTIONS["data"].variants["imagefolder"]["channels"](
            True, "data.channels"
        )  # True == 1 in Python
    assert schema.number(above=0)(1, "lr") == 1.0  # an int is a number


# --- Hydra's errors, as the command line reports them ---------------------------------------------------------


def composition_error(overrides):
    with pytest.raises((ConfigCompositionException, OverrideParseException)) as caught:
        compose_config(overrides)
    return cli.describe(caught.value)


def test_hydras_composition_errors_read_as_one_line_naming_the_key():
    assert composition_error(["epoch=3"]).startswith("epoch is not a key of the config; did you mean epochs?")
    assert composition_error(["strategy=freeze_to", "strategy.kk=3"]).startswith(
        "strategy.kk is not a key of strategy 'freeze_to'; did you mean k? its keys: bn, epochs, k, lr, name"
    )
    assert composition_error(["strategy=head-only"]) == (
        "Could not find 'strategy/head-only' (did you mean strategy=head_only?). "
        "Available options in 'strategy': auto_rgn, autofreeze, bitfit, freeze_to, freezeout, full_unfreeze, gradual, head_only, l2sp, llrd, lp_ft, never, surgical"
    )
    # a section the schema leaves to its owner: the keys Hydra has for it
    assert composition_error(["search=finetune_lr", "search.n_trial=3"]).startswith(
        "search.n_trial is not a key of search; did you mean n_trials? its keys: conditional,"
    )
    for message in (composition_error(["seed=0,1"]), composition_error(["lr=[1e-3,"])):
        assert "\n" not in message and message


def test_the_entry_point_exits_2_on_bad_input_and_keeps_tracebacks_for_bugs(monkeypatch, capsys):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")  # restored afterwards: run_entry_point sets it

    def bad_input():
        raise ConfigError("lr=True must be a number > 0")

    with pytest.raises(SystemExit) as exited:
        cli.run_entry_point(bad_input)
    assert exited.value.code == 2
    assert capsys.readouterr().err == "error: lr=True must be a number > 0\n"

    def bug():
        raise KeyError("a bug")

    with pytest.raises(KeyError, match="a bug"):  # not swallowed: Python prints it and exits 1
        cli.run_entry_point(bug)
    assert os.environ["HYDRA_FULL_ERROR"] == "1"
