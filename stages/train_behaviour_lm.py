"""train_behaviour_lm: the image-conditioned language model that predicts likes (tweetsim.likes.behaviour_lm).

Per trained regime (`train_behaviour_lm.regimes`, default a subset of split.regimes to keep CPU
cost low): instruction-tune LoRA + the image projection on that regime's train rows with likes,
save models/behaviour_lm/<regime>/, and predict val+test rows with likes (up to `max_eval_rows`
per split). Every val+test row of every split.regimes regime gets a prediction (evaluate needs
them): rows the LM did not answer, or answered unparsably, take the fallback model's prediction
(`fallback_model`, the bucket model) and are COUNTED in metrics/train_behaviour_lm.json, which
also scores the LM and the fallback on exactly the test rows the LM answered.
Several GPUs: `accelerate launch --config_file configs/accelerate/multi_gpu.yaml stages/train_behaviour_lm.py`.
usage: python stages/train_behaviour_lm.py [params.yaml] [data] [models] [metrics]
"""

from tweetsim.pipeline.stage import stage  # first: it holds the CPU kernels to AVX2 before numpy loads

import json
import os
import sys
from pathlib import Path

from tweetsim.config.params import load_params
from tweetsim.likes import behaviour_lm as B
from tweetsim.text.metrics import to_json_safe

MAIN = int(os.environ.get("RANK", "0")) == 0  # under `accelerate launch`, one process writes the files


@stage
def main(params_path: str = "params.yaml", data_dir: str = "data", models_dir: str = "models", metrics_dir: str = "metrics") -> None:
    params = load_params(params_path)
    p, data = params["train_behaviour_lm"], Path(data_dir)
    preds, report = B.train_stage(params, data, Path(models_dir), main_process=MAIN)
    if not MAIN:
        return
    out = data / "predictions" / "likes" / f"{B.NAME}.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    preds.to_parquet(out, index=False)
    Path(metrics_dir).mkdir(exist_ok=True)
    (Path(metrics_dir) / "train_behaviour_lm.json").write_text(json.dumps(to_json_safe(report), indent=2, sort_keys=True) + "\n")
    answered = sum(r["lm_answered_rows"] for r in report.values())
    total = sum(r["eval_rows"] for r in report.values())
    print(f"train_behaviour_lm: {answered} of {total} val+test predictions from the LM, the rest from {p['fallback_model']} -> {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
