"""The typed params of the tweet writer: params.yaml `writer` as `WriterConfig`, its subsections as
configs of their own (`pool`: pools.PoolConfig, `match`, `reranker`, `lm`), each built by
config.params.from_section (every field from the section, its keys checked; params.yaml holds the
defaults). `utility`, `reranker.label_weights` and `reranker.rule` are mappings by design (weights of
named components, the grid of the choice rule) and stay dicts."""

from __future__ import annotations

from dataclasses import dataclass

from tweetsim.config.params import section_config
from tweetsim.config.trees import TreeConfig
from tweetsim.writer.pools import PoolConfig


@dataclass(frozen=True)
class MatchConfig:
    """params.yaml `writer.match`: a candidate's weight as a pseudo-reference, exp(-penalties)."""

    recency_halflife_days: float
    kind: float
    views: float
    duration: float
    hour: float
    weekday: float
    likes: float
    own_weight: float


@dataclass(frozen=True)
class RerankerConfig(TreeConfig):
    """params.yaml `writer.reranker`."""

    enabled: bool
    objective: str
    feature_groups: list
    label_weights: dict
    rule: dict
    resamples: int
    max_train_queries: int | None
    pairs_per_sample: int
    max_val_queries: int | None


@dataclass(frozen=True)
class DraftConfig:
    """params.yaml `writer.lm`: the fine-tuned LM's drafts as extra candidates."""

    candidates: int
    max_rows: int | None
    temperature: float
    top_p: float


@section_config("writer")
class WriterConfig:
    """params.yaml `writer`."""

    caption_similarity: bool
    embed_model: str | None
    pool: PoolConfig
    workers: int
    share_pools: float
    utility: dict
    match: MatchConfig
    past_only_regimes: list | None
    brand_held_out_regimes: list | None
    typical_baseline_regimes: list | None
    edits: list
    reranker: RerankerConfig
    lm: DraftConfig
    cli_regime: str
