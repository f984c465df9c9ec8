"""The typed params of the likes models: one config per params.yaml section they read, each built by
config.params.from_section (every field from the section, its keys checked; the values and their
comments in params.yaml are the defaults), and `InferenceConfig`, what the Predictor reads of the
classifier at inference (bundle.json's `params`).

- `ClassifierConfig`: train_like_classifier (fit.py, classifier.py, features.py)
- `XgbConfig`, `BucketsConfig`: regress_within_bucket(.xgb) (regressor.py, intervals.py, deploy.py)
- `IntervalConfig`: interval (intervals.py)
- `DeployConfig` (`RouteRecipe`, `LookalikeConfig`): deploy_likes (deploy.py, backtest.py)

The deploy fit and the backtest read these sections together (deploy.LikesParams); the behaviour LM's
section is lm.config.BehaviourLMConfig.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from tweetsim.config.params import ParamsError, from_section, section_config
from tweetsim.config.trees import TreeConfig
from tweetsim.text.runtime import EncoderConfig


@section_config("train_like_classifier")
class ClassifierConfig:
    """params.yaml `train_like_classifier`."""

    bucket_edges: list
    classifier: str               # head | finetune (classifier.MODES)
    head_c: float
    model_name: str | None
    max_length: int
    max_chars: int
    batch_size: int
    max_steps: int
    learning_rate: float
    weight_decay: float
    warmup_ratio: float
    class_weights: bool
    max_class_weight: float
    eval_every: int
    eval_batch_size: int
    max_eval_rows: int
    patience: int
    seed: int
    num_threads: int
    use_captions: bool
    use_ocr: bool
    embed_model: str | None
    embed_components: int
    embed_max_length: int
    embed_text: str
    hide_like_stats: list | None
    hide_history: list | None
    test_history: list | None
    inference_dtype: str | None
    use_text: bool
    crossfit_folds: int | None
    crossfit_regimes: list | None
    history_crossfit_regimes: list | None
    history_folds: int
    progress: bool


@dataclass(frozen=True)
class InferenceConfig:
    """What the Predictor reads of the classifier at inference: the train_like_classifier keys below and
    the `encoder` runtime, copied into bundle.json's `params` by combine_likes (`to_bundle`) and read
    back from there (`from_bundle`), so a served model embeds and classifies as it was trained."""

    max_chars: int
    eval_batch_size: int
    embed_components: int
    embed_model: str | None
    embed_max_length: int
    embed_text: str
    inference_dtype: str | None
    use_text: bool
    encoder: EncoderConfig
    classifier: str

    @classmethod
    def of(cls, clf: ClassifierConfig, encoder: EncoderConfig) -> "InferenceConfig":
        return cls(**{f.name: getattr(clf, f.name) for f in dataclasses.fields(cls) if f.name != "encoder"}, encoder=encoder)

    @classmethod
    def from_bundle(cls, p: dict, where: str = "bundle.json params") -> "InferenceConfig":
        try:
            return from_section(cls, where, p)
        except ParamsError as e:
            raise ParamsError(f"{e} (a bundle written by an older combine_likes: rerun `dvc repro combine_likes deploy_likes`)") from None

    def to_bundle(self) -> dict:
        """bundle.json's `params`: these keys as params.yaml gives them, `encoder` as its section."""
        return dataclasses.asdict(self)


@section_config("regress_within_bucket.xgb")
class XgbConfig(TreeConfig):
    """params.yaml `regress_within_bucket.xgb`: the bucket regressors' and the tabular gate's trees."""

    reg_lambda: float
    min_rows: int
    min_val_rows: int
    drop_features: list
    time_features: str


@section_config("regress_within_bucket")
class BucketsConfig:
    """params.yaml `regress_within_bucket`."""

    xgb: XgbConfig
    gate: str                     # tabular | classifier
    final: str                    # argmax | mixture
    smearing: bool
    cli_regime: str
    cli_history: str


@section_config("interval")
class IntervalConfig:
    """params.yaml `interval`: the conformal ranges."""

    coverage: float
    scale: str                    # constant | mixture
    brand_folds_regimes: list | None
    brand_folds: int


@dataclass(frozen=True)
class RouteRecipe:
    """params.yaml `deploy_likes.routes.<route>`: how a route's fit sees its rows."""

    settings_from: str
    hide: list
    hide_like_stats: bool
    lookalike: bool
    crossfit_level: str


@dataclass(frozen=True)
class LookalikeConfig:
    """params.yaml `deploy_likes.lookalike`."""

    k: int
    shrink: float
    max_words: int


@section_config("deploy_likes")
class DeployConfig:
    """params.yaml `deploy_likes`."""

    routes: dict[str, RouteRecipe]
    lookalike: LookalikeConfig
    intervals: dict
    brand_blend: float
    stats_route: bool
    min_calibration_rows: int
    num_threads: int

