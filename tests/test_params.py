"""params.yaml is the one set of defaults, checked against a schema that is not params.yaml itself
(tweetsim/config/params_schema.yaml): every typed config is built from the shipped file alone, and an
unknown, missing or mistyped key stops a run with a line naming it, whoever wrote it into params.yaml."""

import pytest
import yaml

from conftest import ROOT
from tweetsim.config.params import SCHEMA_PATH, ParamsError, check, load_params, schema_of

SHIPPED = yaml.safe_load((ROOT / "params.yaml").read_text())


def configs():
    """(section name, config class, section dict) of every typed config the stages and commands build."""
    from tweetsim.likes.behaviour_lm import TrainConfig as BehaviourLMConfig
    from tweetsim.lm.generate import GenConfig
    from tweetsim.lm.model import TrainConfig
    from tweetsim.writer.pools import PoolConfig

    llm = {**SHIPPED["train_llm"], "projection_lr": SHIPPED["train_llm"]["image_prefix"]["projection_lr"]}  # as the stage
    return [("generate", GenConfig, SHIPPED["generate"]), ("writer.pool", PoolConfig, SHIPPED["writer"]["pool"]),
            ("train_llm", TrainConfig, llm), ("train_behaviour_lm", BehaviourLMConfig, SHIPPED["train_behaviour_lm"])]


def test_shipped_params_pass_their_own_check():
    assert load_params(ROOT / "params.yaml") == SHIPPED


def test_the_committed_schema_is_the_shipped_params_key_tree():
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    assert schema == schema_of(SHIPPED), "params.yaml changed: python scripts/params_schema.py"


@pytest.mark.parametrize("edit,message", [
    ("+split.sed=3", "unknown key 'split.sed' in section 'split'; did you mean 'split.seed'?"),
    ("split.seed=abc", "'split.seed' is a string ('abc'), expected an integer"),
    ("+novel_section.x=1", "unknown key 'novel_section' in section 'top level'"),
])
def test_a_params_yaml_edited_by_dvc_s_is_checked_against_the_schema(edit, message, tmp_path, monkeypatch):
    """`dvc exp run -S` writes into params.yaml, the file being checked: the schema must not follow it."""
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text())
    apply_overrides(path, [edit])
    with pytest.raises(ParamsError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        load_params(path)


@pytest.mark.parametrize("name,cls,section", configs(), ids=lambda x: x if isinstance(x, str) else "")
def test_every_config_builds_from_params_yaml_alone(name, cls, section):
    cfg = cls.from_params(section)
    for field, value in vars(cfg).items():
        assert value == section[field], f"{name}.{field}: {value!r} is not params.yaml's {section[field]!r}"
    # no second set of defaults: a field left out is an error, not a value from code
    first = next(iter(vars(cfg)))
    with pytest.raises(ParamsError, match=f"lacks \\['{first}'\\]"):
        cls.from_params({k: v for k, v in section.items() if k != first})


def test_config_refuses_a_misspelt_key_with_the_closest():
    from tweetsim.lm.generate import GenConfig

    with pytest.raises(ParamsError, match="unknown key 'generate.max_new_tokes'.*did you mean 'generate.max_new_tokens'"):
        GenConfig.from_params({**SHIPPED["generate"], "max_new_tokes": 8})


@pytest.mark.parametrize("change,message", [
    (("train_llm", "steps", "6"), "'train_llm.steps' is a string ('6'), expected an integer"),
    (("split", "regimes", "random"), "'split.regimes' is a string ('random'), expected a list"),
    (("generate", "temperature", True), "'generate.temperature' is a boolean"),
])
def test_mistyped_key_names_section_key_and_type(change, message, tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    sec, key, value = change
    params[sec][key] = value
    with pytest.raises(ParamsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check(params, "p.yaml")


def test_missing_key_is_an_error_and_null_and_int_for_float_are_not(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    del params["split"]["seed"]
    with pytest.raises(ParamsError, match="missing key 'split.seed'"):
        check(params, "p.yaml")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["generate"]["temperature"] = 1           # an int where the schema has a float
    params["generate"]["max_eval_rows"] = None      # null: "no limit" where the schema has a number
    check(params, "p.yaml")
