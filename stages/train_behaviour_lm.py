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

from tweetsim.apps.entry import stage  # first: it holds the CPU kernels to AVX2 before numpy loads

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from tweetsim.likes import behaviour_lm as B
from tweetsim.likes import features as F
from tweetsim.lm import model as llm
from tweetsim.lm import train as trainloop
from tweetsim.lm.prefix import no_images_notice
from tweetsim.likes.metrics import likes_metrics
from tweetsim.config.params import load_params
from tweetsim.data.sides import join_from
from tweetsim.data.schema import read_tweets

MAIN = int(os.environ.get("RANK", "0")) == 0


def _cap(idx: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    if n is None or len(idx) <= n:
        return idx
    return np.sort(np.random.default_rng(seed).choice(idx, size=n, replace=False))


@stage
def main(params_path: str = "params.yaml", data_dir: str = "data", models_dir: str = "models", metrics_dir: str = "metrics") -> None:
    params = load_params(params_path)
    p = params["train_behaviour_lm"]
    llm.check_quantization(p.get("quantization"))  # fail before any loading
    data = Path(data_dir)
    cfg = B.TrainConfig.from_params(p)
    all_regimes = params["split"]["regimes"]
    trained = [r for r in (p["regimes"] or all_regimes) if r in all_regimes]
    table = read_tweets(data / "tweets.parquet").merge(pd.read_parquet(data / "splits.parquet"), on=["source", "id"])
    table = table[table["likes"].notna()].sort_values(["source", "id"]).reset_index(drop=True)
    table = join_from(table, data)
    for col in ("company", "username"):
        table[col] = table[col].fillna("").astype(str)
    fb_path = data / "predictions" / "likes" / f"{p['fallback_model']}.parquet"
    if not fb_path.is_file():
        raise SystemExit(f"train_behaviour_lm: fallback predictions {fb_path} are missing "
                         f"(train_behaviour_lm.fallback_model={p['fallback_model']!r}: run its stage first)")
    fb_all = pd.read_parquet(fb_path)

    enc = B.VisionEncoder(p["vision"]["backend"], p["vision"].get("clip_model"), batch_size=int(p["vision"]["batch_size"]))
    preds, report = [], {}
    for regime in all_regimes:
        side = table[regime].to_numpy()
        train_median = float(table.loc[side == "train", "likes"].astype(float).median())
        ev = np.flatnonzero(np.isin(side, ["val", "test"]))
        fb = table.iloc[ev][["source", "id"]].merge(fb_all[fb_all["regime"] == regime], on=["source", "id"], how="left")
        fallback = fb["pred_likes"].to_numpy(float)
        no_fb = int(np.isnan(fallback).sum())
        fallback = np.where(np.isnan(fallback), train_median, fallback)  # fallback of the fallback: counted
        pred = fallback.copy()
        rep = {"eval_rows": int(len(ev)), "fallback_missing_rows_took_train_median": no_fb}
        if regime in trained:
            tr = np.flatnonzero(side == "train")
            tr = _cap(tr, p.get("max_train_examples"), cfg.seed)
            train = table[side == "train"]
            tables = {lv: F.history_table(train, lv) for lv in F.LEVELS}
            hist_tr = B.history(train, train=train)  # shifted: earlier rows only
            hist_tr = [hist_tr[i] for i in np.searchsorted(np.flatnonzero(side == "train"), tr)]
            rows_tr = table.iloc[tr]
            threshold = float(p["high_threshold"]) if p.get("high_threshold") is not None else train_median
            feats, has, why = B.image_features(rows_tr, data / "media", enc, int(p["vision"]["max_images"]), progress=p["progress"])
            answers = [B.verbalise_likes(v, threshold) for v in rows_tr["likes"].astype(float)]
            trainloop.set_seed(cfg.seed)
            tok, model = B.build_model(p, enc.dim, cfg.seed)
            examples = B.make_examples(tok, rows_tr, hist_tr, feats, has, cfg.max_length, answers, int(p["max_field_chars"]))
            # checkpoints keyed by every param and the encoded data: only an identical interrupted run resumes
            key = llm.fingerprint({"p": p, "vision": enc.id, "format": trainloop.CHECKPOINT_FORMAT, "data": llm.fingerprint(
                [{"ids": e["input_ids"], "labels": e["labels"], "feat": e["feat"]} for e in examples])})
            ckpt = Path(p["checkpoint_dir"]) / f"{regime}-{key}" if p.get("checkpoint_dir") else None
            res = B.train(model, tok, examples, cfg, live_dir=Path("dvclive") / "train_behaviour_lm" / regime, progress=p["progress"],
                          checkpoint_dir=ckpt, resume=bool(p["resume"]))
            out = Path(models_dir) / B.NAME / regime
            if MAIN:
                # history: every row with likes, the account history the CLI uses
                B.save(model, tok, out, {"params": p, "feat_dim": enc.dim, "vision": enc.id, "threshold": threshold,
                                         "train_median": train_median, "regime": regime},
                       {lv: F.history_table(table, lv) for lv in F.LEVELS})
            # predict: a seeded cap per split keeps CPU cost bounded; the rest keep the fallback
            pick = np.concatenate([_cap(np.flatnonzero(side[ev] == s), p.get("max_eval_rows"), cfg.seed) for s in ("val", "test")])
            rows_ev = table.iloc[ev[pick]]
            f_ev, h_ev, why_ev = B.image_features(rows_ev, data / "media", enc, int(p["vision"]["max_images"]), progress=p["progress"])
            ex_ev = B.make_examples(tok, rows_ev, B.history(rows_ev, tables=tables), f_ev, h_ev, cfg.max_length,
                                    max_field_chars=int(p["max_field_chars"]))
            likes, raw, used = B.predict(model, tok, ex_ev, fallback[pick], int(p["eval_batch_size"]), int(p["max_new_tokens"]),
                                         progress=p["progress"], constrain=bool(p["constrain"]))
            pred[pick] = likes
            is_test = side[ev[pick]] == "test"
            y = table.iloc[ev[pick]]["likes"].astype(float).to_numpy()
            rep.update({
                "train_examples": len(examples), "train_with_image": int(has.sum()), "train_text_only": int((~has).sum()),
                "train_no_image_reasons": why, "final_loss": res["final_loss"], "threshold": threshold,
                "projection_grad_norm_step1": res["projection_grad_norm"],
                "lm_answered_rows": int(len(pick)), "lm_with_image": int(h_ev.sum()), "lm_text_only": int((~h_ev).sum()),
                "unparsable_answers_took_fallback": int(used.sum()),
                "rows_not_answered_by_lm_took_fallback": int(len(ev) - len(pick)),
                "answered_test_rows": {"lm": likes_metrics(y[is_test], likes[is_test], train_median),
                                       p["fallback_model"]: likes_metrics(y[is_test], fallback[pick][is_test], train_median)}
                if is_test.sum() > 1 else None,
                "example_answers": raw[:3]})
            n_img = int(has.sum() + h_ev.sum())
            if n_img == 0:
                print(no_images_notice("train_behaviour_lm", regime, f"train: {why}; predicted: {why_ev}", "tests/test_behaviour_lm.py"))
            print(f"train_behaviour_lm {regime}: {len(examples)} train rows ({int(has.sum())} with image), {cfg.steps} steps, "
                  f"{res['seconds_per_step']:.2f} s/step, loss {res['final_loss']:.3f}; LM answered {len(pick)} of {len(ev)} "
                  f"val+test rows ({int(h_ev.sum())} with image), {int(used.sum())} unparsable -> {p['fallback_model']}; "
                  f"{len(ev) - len(pick)} rows not answered -> {p['fallback_model']}")
        else:
            rep.update({"lm_answered_rows": 0, "rows_not_answered_by_lm_took_fallback": int(len(ev))})
            print(f"train_behaviour_lm {regime}: NOT TRAINED (not in train_behaviour_lm.regimes): all {len(ev)} val+test "
                  f"rows carry the {p['fallback_model']} prediction under the name {B.NAME}")
        report[regime] = rep
        preds.append(pd.DataFrame({"regime": regime, "source": table.iloc[ev]["source"].to_numpy(),
                                   "id": table.iloc[ev]["id"].to_numpy(), "pred_likes": pred}))
    if not MAIN:
        return
    out = data / "predictions" / "likes" / f"{B.NAME}.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.concat(preds).sort_values(["regime", "source", "id"]).reset_index(drop=True).to_parquet(out, index=False)
    Path(metrics_dir).mkdir(exist_ok=True)
    from tweetsim.text.metrics import to_json_safe

    (Path(metrics_dir) / "train_behaviour_lm.json").write_text(json.dumps(to_json_safe(report), indent=2, sort_keys=True) + "\n")
    answered = sum(r["lm_answered_rows"] for r in report.values())
    total = sum(r["eval_rows"] for r in report.values())
    print(f"train_behaviour_lm: {answered} of {total} val+test predictions from the LM, the rest from {p['fallback_model']} -> {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
