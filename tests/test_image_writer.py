"""The image-conditioned tweet writer (train_llm.image_prefix) on a tiny random Llama and the tiny
random vision encoder: projection gradients, checkpoint resume with the projector, adapter +
projector reload giving identical generations, rows without media = the text-only model, and the
train_llm / generate_text stages and `tweetsim generate --media` end to end."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_behaviour_lm import _jpeg, photo, stage_data, tiny_base  # noqa: F401  (fixtures: tiny Llama, sample rows + generated images)

from stages_helper import stage, write_params
from tweetsim.lm import prefix as IP
from tweetsim.lm.config import ProjectionConfig
from tweetsim.lm import model as llm
from conftest import gen_config, llm_train_config
from tweetsim.lm.generate import generate
from tweetsim.writer.prompts import render, verbalise

ROOT = Path(__file__).resolve().parents[1]
LORA = {"rank": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
PROJ = {"kind": "mlp", "n_prefix": 2}


def _writer(base):
    lm = llm.add_lora(llm.load_model(str(base), "none", "float32", for_training=True), **LORA)
    return IP.attach(lm, 16, ProjectionConfig(**PROJ), seed=3)


def _examples(tok, n=8):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        p = render(tok, verbalise({"company": "nike", "username": "nike", "likes": 10 * i, "n_photo": 1}))
        ex = llm.encode_example(tok, p, ["high, about 1200 likes", "low, about 7 likes"][i % 2], 96)
        has = i % 4 != 3  # a row without media in every batch of 4
        ex.update(feat=rng.normal(size=16).astype(np.float32) * has, has_image=has)
        out.append(ex)
    return out


def test_writer_trains_resumes_reloads_and_text_rows_match(tiny_base, tmp_path):  # noqa: F811
    tok = llm.load_tokenizer(str(tiny_base))
    ex = _examples(tok)
    cfg = llm_train_config(steps=4, batch_size=4, lr=5e-3, projection_lr=1e-2, warmup_steps=1, max_length=96, save_every=2, seed=1)
    model = _writer(tiny_base)
    before = {k: v.clone() for k, v in model.projector.state_dict().items()}
    res = llm.train_lora(model, tok, ex, cfg, tmp_path / "a", checkpoint_dir=tmp_path / "ckpt", image_meta={"train_with_image": 6})
    assert res["projection_grad_norm"] > 0 and np.isfinite(res["final_loss"])
    assert any(not torch.equal(before[k], v) for k, v in model.projector.state_dict().items())
    meta = json.loads((tmp_path / "a" / IP.META_FILE).read_text())
    assert meta["train_with_image"] == 6 and meta["feat_dim"] == 16 and meta["n_prefix"] == 2
    # a longer run resumes at step 4 with the projector restored from the checkpoint
    res6 = llm.train_lora(_writer(tiny_base), tok, ex, llm_train_config(**{**cfg.__dict__, "steps": 6}), tmp_path / "a6",
                          checkpoint_dir=tmp_path / "ckpt")
    assert res6["resumed_from"] == 4
    with pytest.raises(ValueError, match="packing"):
        llm.train_lora(_writer(tiny_base), tok, ex, llm_train_config(steps=1, packing=True), tmp_path / "p")

    # adapter + projector reload: identical greedy generations, batched, with and without images
    reloaded, meta2 = IP.with_projector(llm.load_adapter(str(tiny_base), tmp_path / "a", "none", "float32"), tmp_path / "a")
    assert meta2 is not None and isinstance(reloaded, IP.PrefixLM)
    model.eval()
    prompts = [render(tok, f"Brand: nike\nTarget likes: {n}\nWrite the tweet.") for n in (1, 22, 333, 4)]
    feats = np.stack([e["feat"] for e in ex[:4]])
    has = np.array([e["has_image"] for e in ex[:4]])
    g = gen_config(max_new_tokens=6, batch_size=4, repetition_penalty=1.2)
    got, _ = generate(reloaded, tok, prompts, g, feats=feats, has_image=has)
    assert got == generate(model, tok, prompts, g, feats=feats, has_image=has)[0]
    # a row without media writes exactly what the text-only model (same adapter, no prefix) writes
    text_only, _ = generate(reloaded.lm, tok, prompts, g)
    assert got[3] == text_only[3]
    assert generate(reloaded, tok, prompts, g)[0] == text_only  # no features given: every row text-only
    beams, _ = generate(reloaded, tok, prompts, gen_config(max_new_tokens=4, num_candidates=2), feats=feats, has_image=has)
    assert len(beams) == 4
    # a text-only adapter folder loads as the plain model
    assert IP.with_projector(reloaded.lm, tmp_path / "nothing")[1] is None


@pytest.fixture(scope="module")
def writer_data(stage_data, tiny_base):  # noqa: F811
    """stage_data (a third of the rows with generated images) + prompts.parquet for regime random."""
    from tweetsim.data.schema import read_tweets

    tok = llm.load_tokenizer(str(tiny_base))
    t = read_tweets(stage_data / "tweets.parquet").merge(pd.read_parquet(stage_data / "splits.parquet"), on=["source", "id"])
    pr = pd.DataFrame({"regime": "random", "split": t["random"], "source": t["source"], "id": t["id"],
                       "prompt": [render(tok, verbalise(r)) for r in t.to_dict("records")],
                       "completion": t["content"].fillna("New drop <hyperlink>")})  # these sample rows carry no text
    pr.to_parquet(stage_data / "prompts.parquet", index=False)
    return stage_data


def test_train_llm_and_generate_text_stages_with_images(writer_data, tiny_base, tmp_path, capsys, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    over = {"train_llm.model.name": str(tiny_base), "train_llm.model.dtype": "float32", "train_llm.lora": LORA,
            "train_llm.steps": 2, "train_llm.batch_size": 4, "train_llm.max_length": 96, "train_llm.regimes": ["random"],
            "train_llm.checkpoint_dir": str(tmp_path / "ckpt"), "train_llm.image_prefix.enabled": True,
            "train_llm.image_prefix.vision.backend": "tiny-random", "train_llm.image_prefix.projection": PROJ,
            "generate.max_eval_rows": 4, "generate.max_new_tokens": 4, "build_prompts.caption_similarity": False}
    params = write_params(tmp_path, **over)
    models, metrics = tmp_path / "models", tmp_path / "metrics"
    stage("train_llm").main(str(params), str(writer_data), str(models), str(metrics))
    m = json.loads((metrics / "train_llm.json").read_text())["random"]
    assert m["train_with_image"] > 0 and m["train_text_only"] > 0 and m["projection_grad_norm"] > 0
    meta = json.loads((models / "llm" / "random" / IP.META_FILE).read_text())
    assert meta["train_with_image"] == m["train_with_image"] and (models / "llm" / "random" / IP.PROJECTOR_FILE).is_file()
    assert "with an image" in capsys.readouterr().out

    stage("generate_text").main(str(params), str(writer_data), str(models), str(metrics))
    g = json.loads((metrics / "generate.json").read_text())["random"]
    assert g["rows"] == 4 and g["rows_with_image"] + g["rows_text_only"] == 4
    assert len(pd.read_parquet(writer_data / "predictions" / "text" / "llm_lora.parquet")) == 4
    assert "image-conditioned writer" in capsys.readouterr().out

    # tweetsim generate --media: the image-prefix adapter reads the rows' images through the manifest
    from tweetsim.apps.cli import main
    from tweetsim.data.load import read_official

    src = ROOT / "data" / "sample" / "official" / "content_simulation_test_time.xlsx"
    pd.read_excel(src, nrows=4).to_csv(tmp_path / "in.csv", index=False)
    official, _ = read_official(tmp_path / "in.csv")
    recs = []
    for i, urls in enumerate(official["image_urls"]):
        for u in urls:
            raw = _jpeg(photo(200 + i))
            sha = hashlib.sha256(raw).hexdigest()
            (tmp_path / "media" / "store" / sha[:2]).mkdir(parents=True, exist_ok=True)
            (tmp_path / "media" / "store" / sha[:2] / sha).write_bytes(raw)
            recs.append({"url": u, "kind": "Photo", "status": "ok" if i < 2 else "not_fetched", "sha256": sha,
                         "path": f"store/{sha[:2]}/{sha}"})
    pd.DataFrame(recs).to_csv(tmp_path / "media" / "manifest.csv", index=False)
    rc = main(["generate", "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv"), "--params", str(params),
               "--adapter", str(models / "llm" / "random"), "--pool", "none", "--media", str(tmp_path / "media"),
               "--writer", "lm"])
    assert rc == 0 and pd.read_csv(tmp_path / "out.csv")["id"].tolist() == official["id"].tolist()
    out = capsys.readouterr().out
    assert "image-conditioned" in out and "2 rows with an image, 2 text only" in out

    # no image at all: trained text-only, said loudly
    (tmp_path / "empty").mkdir()
    for f in ("prompts.parquet", "tweets.parquet"):
        (tmp_path / "empty" / f).write_bytes((writer_data / f).read_bytes())
    params1 = write_params(tmp_path, **{**over, "train_llm.steps": 1})
    stage("train_llm").main(str(params1), str(tmp_path / "empty"), str(tmp_path / "m2"), str(tmp_path / "x2"))
    assert "NO row had a readable image file" in capsys.readouterr().out

