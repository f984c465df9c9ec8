"""The typed params of the language models: params.yaml `train_llm` (`LLMConfig`), `build_prompts`
(`PromptsConfig`), `train_behaviour_lm` (`BehaviourLMConfig`) and the subsections they share (`model`,
`lora`, `vision`, `projection`), each built by config.params.from_section (every field from the section, its keys
checked; params.yaml holds the defaults). The training loops' own settings are lm.model.TrainConfig
and likes.behaviour_lm.TrainConfig; what both sections and both loops read alike is `LoopConfig`; generation's is
lm.generate.GenConfig."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from tweetsim.config.params import section_config


@dataclass(frozen=True)
class ModelConfig:
    """`train_llm.model` / `train_behaviour_lm.model`: the base causal LM."""

    name: str
    cache_dir: str
    dtype: str | None


@dataclass(frozen=True)
class LoraConfig:
    """`train_llm.lora` / `train_behaviour_lm.lora`: lm.model.add_lora's arguments."""

    rank: int
    alpha: int
    dropout: float
    target_modules: list


@dataclass(frozen=True)
class VisionConfig:
    """`train_llm.image_prefix.vision` / `train_behaviour_lm.vision`: the frozen image encoder."""

    backend: str
    clip_model: str | None
    max_images: int
    batch_size: int


@dataclass(frozen=True)
class ProjectionConfig:
    """`train_llm.image_prefix.projection` / `train_behaviour_lm.projection`: features -> prefix embeddings."""

    kind: str
    n_prefix: int


@dataclass(frozen=True)
class ImagePrefixConfig:
    """`train_llm.image_prefix`."""

    enabled: bool
    vision: VisionConfig
    projection: ProjectionConfig
    projection_lr: float


@dataclass(frozen=True)
class LoopConfig:
    """The settings both LoRA training loops read (lm.train's LoopTrainer): keys of the same names in
    `train_llm` and `train_behaviour_lm`, the base of their section configs and of the loops' TrainConfigs."""

    steps: int
    batch_size: int
    grad_accum: int
    lr: float
    warmup_steps: int
    max_length: int
    seed: int
    save_every: int  # checkpoint period (steps) when a checkpoint_dir is given; 0: only at the end
    log_every: int
    num_threads: int


@section_config("train_llm")
class LLMConfig(LoopConfig):
    """params.yaml `train_llm` (lm.model.TrainConfig.of takes the training loop's settings from it)."""

    model: ModelConfig
    quantization: str | None
    regimes: list | None
    lora: LoraConfig
    weight_decay: float
    packing: bool
    max_train_examples: int | None
    resume: bool
    checkpoint_dir: str
    merge: bool
    image_prefix: ImagePrefixConfig


@section_config("build_prompts")
class PromptsConfig:
    """params.yaml `build_prompts`: the writer LM's prompts and their exemplars."""

    exemplars: int
    caption_similarity: bool
    embed_model: str | None
    max_field_chars: int


@section_config("train_behaviour_lm")
class BehaviourLMConfig(LoopConfig):
    """params.yaml `train_behaviour_lm` (its training loop's settings: likes.behaviour_lm.TrainConfig); saved
    whole in the model's state.json, which the CLI reads it back from."""

    model: ModelConfig
    quantization: str | None
    lora: LoraConfig
    vision: VisionConfig
    projection: ProjectionConfig
    regimes: list | None
    fallback_model: str
    high_threshold: float | None
    projection_lr: float
    max_field_chars: int
    max_train_examples: int | None
    max_eval_rows: int | None
    eval_batch_size: int
    max_new_tokens: int
    constrain: bool
    resume: bool
    checkpoint_dir: str | None
    progress: bool

    def to_params(self) -> dict:
        """The section as params.yaml gives it (what state.json keeps)."""
        return dataclasses.asdict(self)
