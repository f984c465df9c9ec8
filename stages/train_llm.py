"""train_llm: LoRA fine-tuning of the causal LM named in params, per regime, loss on the completion only
(tweetsim.lm.regimes).

Reads data/prompts.parquet (train rows of each regime), writes the adapter to models/llm/<regime>/
(and models/llm/<regime>/merged/ with `merge: true`), training curves to dvclive/train_llm/<regime>/,
and metrics/train_llm.json. Checkpoints live under `checkpoint_dir` keyed by a fingerprint of the
model, params and data, so an interrupted run resumes where it stopped and a changed run starts over.
With `image_prefix.enabled`, each row's image (data/media manifest) becomes prefix embeddings in
front of the prompt (tweetsim.lm.prefix); rows without a readable image are text-only, counted
in the metrics and in models/llm/<regime>/image_prefix.json beside projector.pt.
Several GPUs: `accelerate launch --config_file configs/accelerate/multi_gpu.yaml stages/train_llm.py`.
usage: python stages/train_llm.py [params.yaml] [data] [models] [metrics]
"""

from tweetsim.pipeline.stage import stage  # first: it holds the CPU kernels to AVX2 before numpy loads

import json
import os
import sys
from pathlib import Path

from tweetsim.config.params import load_params
from tweetsim.lm.regimes import train_regimes

MAIN = int(os.environ.get("RANK", "0")) == 0  # under `accelerate launch`, one process writes the files


@stage
def main(params_path: str = "params.yaml", data_dir: str = "data", models_dir: str = "models", metrics_dir: str = "metrics") -> None:
    report = train_regimes(load_params(params_path), Path(data_dir), Path(models_dir), main_process=MAIN)
    if not MAIN:
        return
    Path(metrics_dir).mkdir(exist_ok=True)
    # seconds_per_step is machine-dependent: kept out of the metrics file so reruns are byte-identical
    stable = {r: {k: v for k, v in d.items() if k not in ("seconds_per_step", "resumed_from")} for r, d in report.items()}
    (Path(metrics_dir) / "train_llm.json").write_text(json.dumps(stable, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
