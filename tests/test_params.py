"""params.yaml is the one set of defaults, checked against a schema that is not params.yaml itself
(tweetsim/config/params_schema.yaml): every typed config is built from the shipped file alone, and an
unknown, missing or mistyped key stops a run with a line naming it, whoever wrote it into params.yaml."""

import copy
import dataclasses
import json
import re

import pytest
import yaml

from conftest import ROOT
from tweetsim.config.params import SCHEMA_PATH, ParamsError, check, load_params, schema_of

SHIPPED = yaml.safe_load((ROOT / "params.yaml").read_text())


def configs():
    """(section name, config class, section dict) of every typed config the stages and commands build."""
    from tweetsim.data.splits import SplitConfig
    from tweetsim.likes.behaviour_lm import TrainConfig as BehaviourLMTrainConfig
    from tweetsim.likes.config import BucketsConfig, ClassifierConfig, DeployConfig, IntervalConfig, XgbConfig
    from tweetsim.lm.config import BehaviourLMConfig, LLMConfig, PromptsConfig
    from tweetsim.lm.generate import GenConfig
    from tweetsim.lm.model import TrainConfig
    from tweetsim.text.runtime import EncoderConfig
    from tweetsim.vision.config import CaptionConfig, OcrConfig
    from tweetsim.writer.config import WriterConfig
    from tweetsim.writer.pools import PoolConfig

    s = SHIPPED
    return [("generate", GenConfig, s["generate"]), ("writer.pool", PoolConfig, s["writer"]["pool"]),
            ("writer", WriterConfig, s["writer"]), ("train_llm", LLMConfig, s["train_llm"]),
            ("train_llm (training loop)", TrainConfig, s["train_llm"]), ("build_prompts", PromptsConfig, s["build_prompts"]),
            ("train_behaviour_lm", BehaviourLMConfig, s["train_behaviour_lm"]),
            ("train_behaviour_lm (training loop)", BehaviourLMTrainConfig, s["train_behaviour_lm"]),
            ("train_like_classifier", ClassifierConfig, s["train_like_classifier"]),
            ("regress_within_bucket", BucketsConfig, s["regress_within_bucket"]),
            ("regress_within_bucket.xgb", XgbConfig, s["regress_within_bucket"]["xgb"]),
            ("interval", IntervalConfig, s["interval"]), ("deploy_likes", DeployConfig, s["deploy_likes"]),
            ("encoder", EncoderConfig, s["encoder"]), ("caption", CaptionConfig, s["caption"]), ("ocr", OcrConfig, s["ocr"]),
            ("split", SplitConfig, s["split"])]


def _plain(value):
    """A config's field as params.yaml writes it: subsection configs as mappings."""
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


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
    for field in dataclasses.fields(cfg):
        value = _plain(getattr(cfg, field.name))
        # the writer LM's projector learning rate is image_prefix's (the training loop has one list of settings)
        want = section[field.name] if field.name in section else section["image_prefix"][field.name]
        assert value == want, f"{name}.{field.name}: {value!r} is not params.yaml's {want!r}"
    # no second set of defaults: a field left out is an error, not a value from code
    first = dataclasses.fields(cfg)[0].name
    with pytest.raises(ParamsError, match=f"lacks \\['{first}'\\]"):
        cls.from_params({k: v for k, v in section.items() if k != first})


def test_subsections_are_configs_checked_as_their_section():
    from tweetsim.likes.config import DeployConfig, RouteRecipe
    from tweetsim.writer.config import RerankerConfig, WriterConfig

    w = WriterConfig.from_params(SHIPPED["writer"])
    assert isinstance(w.reranker, RerankerConfig) and w.reranker.rule == SHIPPED["writer"]["reranker"]["rule"]
    routes = DeployConfig.from_params(SHIPPED["deploy_likes"]).routes
    assert sorted(routes) == sorted(SHIPPED["deploy_likes"]["routes"]) and isinstance(routes["brand"], RouteRecipe)
    bad = copy.deepcopy(SHIPPED["writer"])
    bad["reranker"]["seeed"] = bad["reranker"].pop("seed")
    with pytest.raises(ParamsError, match="unknown key 'writer.reranker.seeed'.*did you mean 'writer.reranker.seed'"):
        WriterConfig.from_params(bad)
    bad = copy.deepcopy(SHIPPED["deploy_likes"])
    del bad["routes"]["new_brand"]["crossfit_level"]
    with pytest.raises(ParamsError, match=r"section 'deploy_likes.routes.new_brand' lacks \['crossfit_level'\]"):
        DeployConfig.from_params(bad)


def test_bundle_params_round_trip_and_are_the_classifier_sections_keys():
    """bundle.json's `params` (what the Predictor reads at inference) are train_like_classifier's values and
    the encoder section, written and read back through likes.config.InferenceConfig."""
    from tweetsim.likes.config import ClassifierConfig, InferenceConfig
    from tweetsim.text.runtime import EncoderConfig

    inf = InferenceConfig.of(ClassifierConfig.from_params(SHIPPED["train_like_classifier"]),
                             EncoderConfig.from_params(SHIPPED["encoder"]))
    bundled = inf.to_bundle()
    assert bundled["encoder"] == SHIPPED["encoder"]
    assert {k: v for k, v in bundled.items() if k != "encoder"} == {k: SHIPPED["train_like_classifier"][k] for k in bundled
                                                                     if k != "encoder"}
    assert InferenceConfig.from_bundle(json.loads(json.dumps(bundled))) == inf
    with pytest.raises(ParamsError, match="lacks \\['embed_text'\\].*rerun `dvc repro combine_likes"):
        InferenceConfig.from_bundle({k: v for k, v in bundled.items() if k != "embed_text"})


def test_the_library_reads_no_params_section_with_get():
    """Typed params everywhere: tweetsim/ reads a params section through its config (from_section: every key
    from params.yaml, checked), never with `p.get(key, default)`, whose default would be a second set of
    defaults in code and would hide a misspelt or missing key."""
    sections = "|".join(map(re.escape, SHIPPED))
    pattern = re.compile(rf"\b(p|params)\.get\(|\[[\"']({sections})[\"']\]\.get\(")
    hits = [f"{path.relative_to(ROOT)}:{no}: {line.strip()}" for path in sorted((ROOT / "tweetsim").rglob("*.py"))
            for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert not hits, "params read with .get() instead of a typed config:\n" + "\n".join(hits)
    assert pattern.search('x = p.get("seed", 13)') and pattern.search('params["writer"].get("edits")')


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
