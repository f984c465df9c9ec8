"""generate_text: per regime, write tweets for test rows with the fine-tuned model and the base model
(tweetsim.lm.regimes).

Both models get the same prompts (data/prompts.parquet) and decoding params, on the same rows
(at most `generate.max_eval_rows` per regime and split, chosen by a seeded draw, so evaluate
compares them on the rows every text model shares). Writes data/predictions/text/llm_lora.parquet
and data/predictions/text/llm_base.parquet (`regime,source,id,pred_content`) and
metrics/generate.json (rows and generated tokens per regime). An adapter trained with
`train_llm.image_prefix` (projector.pt beside it) writes each row conditioned on its image
(data/media manifest; rows without one text-only, counted); llm_base stays the text-only base.
usage: python stages/generate_text.py [params.yaml] [data] [models] [metrics]
"""

from tweetsim.pipeline.stage import stage  # first: it holds the CPU kernels to AVX2 before numpy loads

import json
import sys
from pathlib import Path

from tweetsim.config.params import load_params
from tweetsim.lm.regimes import generate_regimes


@stage
def main(params_path: str = "params.yaml", data_dir: str = "data", models_dir: str = "models", metrics_dir: str = "metrics") -> None:
    preds, report = generate_regimes(load_params(params_path), Path(data_dir), Path(models_dir))
    out = Path(data_dir) / "predictions" / "text"
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in preds.items():
        frame.to_parquet(out / f"{name}.parquet", index=False)
    Path(metrics_dir).mkdir(exist_ok=True)
    (Path(metrics_dir) / "generate.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print("generate_text: " + "; ".join(f"{r}: {d['rows']} rows" for r, d in report.items()) + f" -> {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
