"""The typed params of the media stages: params.yaml `caption` and `ocr` (sharing `MediaConfig`), each built by
config.params.from_section (every field from the section, its keys checked; params.yaml holds the
defaults). Kept apart from the models' modules so that reading them loads no model library."""

from __future__ import annotations

from dataclasses import dataclass

from tweetsim.config.params import section_config


@dataclass(frozen=True)
class MediaConfig:
    """What both media runners read alike: the backend, how images are read (frames, max_side,
    max_pixels), batches and threads, the result cache, progress and shards (keys of the same names)."""

    backend: str
    frames: int
    batch_size: int
    num_threads: int
    workers: int
    max_side: int
    max_pixels: int
    cache_dir: str
    progress: bool
    shards: list


@section_config("caption")
class CaptionConfig(MediaConfig):
    """params.yaml `caption`."""

    model_name: str | None
    embedding: str
    clip_model: str
    recompute: bool
    top_k: int
    min_prob: float
    max_new_tokens: int
    num_beams: int
    prompt: str | None
    dtype: str
    device: str


@section_config("ocr")
class OcrConfig(MediaConfig):
    """params.yaml `ocr`."""

    limit_side_len: int
    limit_type: str
    score_thresh: float
    rec_batch_size: int
    model_dir: str
