"""The image-conditioned behaviour LM on a tiny random Llama and a tiny random vision encoder:
likes <-> words, the prefix masking of rows without media, a few training steps end to end with
non-zero projection gradients, save/load, an unparsable generation, the stage and the CLI."""

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from stages_helper import stage, write_params
from tweetsim.likes import behaviour_lm as B
from tweetsim.lm import model as llm
from tweetsim.lm.config import BehaviourLMConfig

SMOL_TEMPLATE = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
                 "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
CORPUS = ["Brand: nike Account: @nike Date: 2021-05-03, Monday Media: 1 photo Tweet: new shoes <hyperlink>",
          "high, about 1200 likes", "low, about 7 likes", "Account median likes: 1,204 over 12 earlier tweets",
          "Image: attached Image: none (text only) How many likes will this tweet get? 0123456789"]


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    t = Tokenizer(models.BPE(unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    t.train_from_iterator(CORPUS * 5, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<|im_start|>", "<|im_end|>"],
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=t, unk_token="<unk>", bos_token="<|im_start|>",
                                  eos_token="<|im_end|>", pad_token="<|im_end|>")
    tok.chat_template = SMOL_TEMPLATE
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    out = tmp_path_factory.mktemp("tiny_llama")
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def tiny_params(base: Path, **over) -> dict:
    import yaml

    p = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())["train_behaviour_lm"]
    p["model"]["name"], p["model"]["dtype"] = str(base), "float32"
    p["lora"] = {"rank": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    p["vision"]["backend"] = "tiny-random"
    p.update({"steps": 6, "batch_size": 4, "max_length": 128, "progress": False, "max_new_tokens": 6, **over})
    return p


def photo(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))


def _rows(n=8):
    return pd.DataFrame({"source": "s", "id": np.arange(n), "company": "nike", "username": "nike",
                         "date": pd.Timestamp("2021-05-03", tz="UTC"), "likes": [7.0, 1200.0] * (n // 2),
                         "content": "new shoes <hyperlink>", "n_photo": 1, "caption": "a shoe", "ocr_text": None})


# ---------------------------------------------------------------------------------- pure functions

def test_likes_words_round_trip():
    assert [B.round_sig(x) for x in (0, 7, 15, 1234, 1250.0, 98765)] == [0, 7, 15, 1200, 1200, 99000]
    assert B.verbalise_likes(1234, 100) == "high, about 1200 likes"
    assert B.verbalise_likes(100, 100) == "low, about 100 likes"  # high means above the threshold, as evaluate
    for x in (3, 57, 1234, 250000):
        assert B.parse_likes(B.verbalise_likes(x, 10)) == B.round_sig(x)
    assert B.parse_likes("about 1,200 likes") == 1200 and B.parse_likes("1.5k") == 1500 and B.parse_likes("2M likes") == 2e6
    assert B.parse_likes("The tweet is 1.") is None and B.parse_likes("high, about 1200") == 1200  # a number must be the answer
    assert B.parse_likes("high") is None and B.parse_likes("") is None and B.parse_likes(None) is None
    rng = np.random.default_rng(0)
    for _ in range(300):  # garbage never raises
        s = "".join(chr(c) for c in rng.integers(32, 0x2FF, rng.integers(0, 20)))
        v = B.parse_likes(s)
        assert v is None or (np.isfinite(v) and v >= 0)


def test_prompt_never_leaks_the_likes():
    row = _rows(2).iloc[1].to_dict()
    u = B.user_prompt(row, {"acct_hist_n": 3.0, "acct_hist_median": np.log1p(50.0)}, has_image=False)
    assert "1200" not in u and "Target likes" not in u and "Write the tweet." not in u  # no writer's words
    assert "Account median likes: 50 over 3 earlier tweets" in u and B.NO_IMAGE_LINE in u and "Tweet: new shoes" in u
    assert B.IMAGE_LINE in B.user_prompt(row, None, has_image=True)


# ------------------------------------------------------------------------------------ the model

def test_row_without_media_is_the_text_only_model(tiny_base):
    p = tiny_params(tiny_base)
    tok, model = B.build_model(BehaviourLMConfig.from_params(p), feat_dim=16)
    model.eval()
    ex = B.make_examples(tok, _rows(2), [{}, {}], np.ones((2, 16), np.float32), np.array([False, True]), 128)
    b = B.collate(ex, tok.pad_token_id, left=True)
    with torch.no_grad():
        logits = model(b["input_ids"], b["attention_mask"], b["feats"], b["has_image"]).logits
        n = model.projector.n_prefix
        plain = model.lm(input_ids=b["input_ids"][:1], attention_mask=b["attention_mask"][:1]).logits
        k = int(b["attention_mask"][0].sum())  # compare real (non-pad) positions
        assert torch.allclose(logits[0, n:][-k:], plain[0][-k:], atol=1e-5)
        # the image row's prefix changes its output
        b2 = dict(b, feats=torch.randn(b["feats"].shape))  # (not a rescale: the projector's LayerNorm undoes it)
        assert not torch.allclose(model(**{k_: v for k_, v in b2.items()}).logits[1], logits[1])


@pytest.mark.slow  # trains and predicts
def test_tiny_train_projection_gradients_save_load_predict(tiny_base, tmp_path):
    p = tiny_params(tiny_base, steps=8)
    rows = _rows(8)
    has = np.array([True, True, True, False] * 2)  # a row without media in every batch
    feats = np.random.default_rng(0).normal(size=(8, 16)).astype(np.float32)
    feats[~has] = 0
    tok, model = B.build_model(BehaviourLMConfig.from_params(p), feat_dim=16)
    answers = [B.verbalise_likes(v, 100) for v in rows["likes"]]
    ex = B.make_examples(tok, rows, [{}] * 8, feats, has, 128, answers)
    assert all(sum(lab != llm.IGNORE for lab in e["labels"]) <= len(tok(a + llm.end_of_turn(tok))["input_ids"])
               for e, a in zip(ex, answers))  # loss on the answer only
    before = {k: v.clone() for k, v in model.projector.state_dict().items()}
    res = B.train(model, tok, ex, B.TrainConfig.from_params(p), live_dir=tmp_path / "live", progress=False)
    assert res["projection_grad_norm"] > 0
    assert any(not torch.equal(before[k], v) for k, v in model.projector.state_dict().items())
    assert np.isfinite(res["final_loss"]) and res["losses"][-1] < res["losses"][0]
    assert (tmp_path / "live" / "metrics.json").exists() or any((tmp_path / "live").rglob("*.tsv"))
    B.save(model, tok, tmp_path / "m", {"params": p, "feat_dim": 16, "train_median": 100.0}, {})
    tok2, model2, state = B.load(tmp_path / "m")
    pex = B.make_examples(tok2, rows, [{}] * 8, feats, has, 128)
    b = B.collate(pex[:3], tok2.pad_token_id, left=True)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(b["input_ids"], b["attention_mask"], b["feats"], b["has_image"]).logits,
                              model2(b["input_ids"], b["attention_mask"], b["feats"], b["has_image"]).logits, atol=1e-5)
    likes, raw, used = B.predict(model2, tok2, pex, np.full(8, 42.0), batch_size=3, max_new_tokens=6, progress=False)
    assert len(likes) == len(raw) == 8 and np.all(np.isfinite(likes))
    assert np.all(likes[used] == 42.0)
    assert all(B.parse_likes(r) == v for r, v, u in zip(raw, likes, used) if not u)


@pytest.mark.slow  # trains twice, and once interrupted
def test_training_resumes_from_a_checkpoint_like_an_unbroken_run(tiny_base, tmp_path, monkeypatch):
    p = tiny_params(tiny_base)
    rows, has = _rows(8), np.array([True, False] * 4)
    feats = np.random.default_rng(1).normal(size=(8, 16)).astype(np.float32) * has[:, None]

    def run(ckpt):
        trainloop.set_seed(0)  # the same LoRA initialisation in every run
        tok, model = B.build_model(BehaviourLMConfig.from_params(p), feat_dim=16)
        ex = B.make_examples(tok, rows, [{}] * 8, feats, has, 128, [B.verbalise_likes(v, 100) for v in rows["likes"]])
        cfg = B.TrainConfig.from_params({**p, "steps": 6, "save_every": 2})
        return model, B.train(model, tok, ex, cfg, progress=False, checkpoint_dir=ckpt)

    from tweetsim.lm import train as trainloop

    save = trainloop.LoopTrainer._save_checkpoint

    def save_then_die(self, model, trial):  # the run is killed right after step 4's checkpoint
        save(self, model, trial)
        if self.state.global_step == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainloop.LoopTrainer, "_save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "ckpt")
    monkeypatch.setattr(trainloop.LoopTrainer, "_save_checkpoint", save)
    resumed, res = run(tmp_path / "ckpt")
    assert res["resumed_from"] == 4 and len(res["losses"]) == 6
    unbroken, res_u = run(None)
    assert res_u["resumed_from"] == 0 and np.allclose(res["losses"], res_u["losses"], atol=1e-4)
    ub = unbroken.state_dict()
    bad = [k for k, v in resumed.state_dict().items() if not torch.allclose(v, ub[k], atol=1e-4)]
    assert not bad, bad  # LoRA and projector alike
    # the same run again (a code change the checkpoint key does not see): the finished checkpoint is not
    # resumed as if unfinished (zero steps, no curves, no projection gradient) but trained from the start
    _, res_again = run(tmp_path / "ckpt")
    assert res_again["resumed_from"] == 0 and res_again["projection_grad_norm"] is not None
    assert np.allclose(res_again["losses"], res_u["losses"], atol=1e-4)


def test_constrained_decoding_follows_the_answer_template(tiny_base):
    tok, model = B.build_model(BehaviourLMConfig.from_params(tiny_params(tiny_base)), feat_dim=16)
    g = B.answer_grammar(tok)
    assert tok.decode(g.prefix["high"]) == "high, about " and tok.decode(g.prefix["low"]) == "low, about "
    assert tok.convert_tokens_to_ids("<|im_end|>") in g.number and set(tok(" likes", add_special_tokens=False)["input_ids"]) <= set(g.number)
    assert not set(tok("Brand: nike", add_special_tokens=False)["input_ids"]) <= set(g.number)
    scores = B.AllowOnly(g.number)(None, torch.zeros(2, len(tok)))
    assert torch.isfinite(scores).nonzero()[:, 1].unique().tolist() == g.number
    ex = B.make_examples(tok, _rows(4), [{}] * 4, np.ones((4, 16), np.float32), np.array([True, False] * 2), 128)
    allowed = set("".join(tok.decode([i]) for i in g.number))
    free = B.generate_answers(model, tok, ex, max_new_tokens=6, progress=False, constrain=False)
    constrained = B.generate_answers(model, tok, ex, max_new_tokens=6, progress=False, constrain=True)
    for a in constrained:
        head = "high, about " if a.startswith("high") else "low, about "
        assert a.startswith(head.strip()) and set(a[len(head):]) <= allowed, a
    assert not all(a.startswith(("high", "low")) for a in free)  # the random model left free says anything


def test_unparsable_generation_falls_back_and_is_counted(tiny_base, monkeypatch):
    p = tiny_params(tiny_base)
    tok, model = B.build_model(BehaviourLMConfig.from_params(p), feat_dim=16)
    ex = B.make_examples(tok, _rows(4), [{}] * 4, np.zeros((4, 16), np.float32), np.zeros(4, bool), 128)
    monkeypatch.setattr(B, "generate_answers", lambda *a, **k: ["no idea", "high, about 1,500 likes", "🙂🙂", "low"])
    likes, raw, used = B.predict(model, tok, ex, np.array([10.0, 20.0, 30.0, 40.0]), progress=False)
    assert used.tolist() == [True, False, True, True]
    assert likes.tolist() == [10.0, 1500.0, 30.0, 40.0]


def test_image_features_from_the_manifest(tmp_path):
    media = tmp_path / "media"
    urls, recs = [], []
    for i, data in enumerate([photo(1), photo(2), None, b"not an image"]):
        url = f"http://x/{i}.jpg"
        if data is None:
            recs.append({"url": url, "kind": "Photo", "status": "not_fetched", "sha256": "", "path": ""})
        else:
            raw = data if isinstance(data, bytes) else _jpeg(data)
            sha = hashlib.sha256(raw).hexdigest()
            (media / "store" / sha[:2]).mkdir(parents=True, exist_ok=True)
            (media / "store" / sha[:2] / sha).write_bytes(raw)
            recs.append({"url": url, "kind": "Photo", "status": "ok", "sha256": sha, "path": f"store/{sha[:2]}/{sha}"})
        urls.append([url])
    pd.DataFrame(recs).to_csv(media / "manifest.csv", index=False)
    rows = pd.DataFrame({"source": "s", "id": range(5), "image_urls": urls + [[]],
                         "media": [[{"kind": "Photo"}]] * 4 + [[]], "caption": None})
    enc = B.VisionEncoder("tiny-random")
    feats, has, why = B.image_features(rows, media, enc, progress=False)
    assert has.tolist() == [True, True, False, False, False]
    assert why == {"media but no image file": 1, "no media": 1, "unreadable image file": 1}
    assert np.abs(feats[0] - feats[1]).sum() > 0 and not feats[2:].any()
    # without a manifest every row is text-only, said in the reasons
    f2, h2, why2 = B.image_features(rows, tmp_path / "nothing", enc, progress=False)
    assert not h2.any() and list(why2.values()) == [5]


def _jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG")
    return buf.getvalue()


# ------------------------------------------------------------------------------------ the stage

@pytest.fixture(scope="module")
def stage_data(tmp_path_factory, sample_table):
    """~60 real sample rows with likes; a third of them with generated image files in the store."""
    from tweetsim.data.schema import write_tweets

    d = tmp_path_factory.mktemp("blm_data")
    t = sample_table[sample_table["likes"].notna()].sort_values(["source", "id"]).head(60).reset_index(drop=True)
    write_tweets(t, d / "tweets.parquet")
    sides = np.array(["train"] * 36 + ["val"] * 10 + ["test"] * 14)
    s = t[["source", "id"]].assign(random=sides, unseen_brand=np.roll(sides, 20), unseen_time=sides)
    s.to_parquet(d / "splits.parquet", index=False)
    recs, seen = [], set()
    for i, urls in enumerate(t["image_urls"]):
        for u in list(urls if urls is not None else []):
            if u in seen:
                continue
            seen.add(u)
            if i % 3 == 0:
                raw = _jpeg(photo(i))
                sha = hashlib.sha256(raw).hexdigest()
                (d / "media" / "store" / sha[:2]).mkdir(parents=True, exist_ok=True)
                (d / "media" / "store" / sha[:2] / sha).write_bytes(raw)
                recs.append({"url": u, "kind": "Photo", "status": "ok", "sha256": sha, "path": f"store/{sha[:2]}/{sha}"})
            else:
                recs.append({"url": u, "kind": "Photo", "status": "not_fetched", "sha256": "", "path": ""})
    (d / "media").mkdir(exist_ok=True)
    pd.DataFrame(recs, columns=["url", "kind", "status", "sha256", "path"]).to_csv(d / "media" / "manifest.csv", index=False)
    (d / "predictions" / "likes").mkdir(parents=True)
    fb = pd.concat([s.assign(regime=r)[s[r] != "train"][["regime", "source", "id"]] for r in ("random", "unseen_brand", "unseen_time")])
    fb.assign(pred_likes=77.0).iloc[:-1].to_parquet(d / "predictions" / "likes" / "fb.parquet", index=False)  # one row missing
    return d


@pytest.mark.slow  # trains and predicts
def test_stage_end_to_end(stage_data, tiny_base, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # dvclive/ goes here
    p = tiny_params(tiny_base, regimes=["random"], fallback_model="fb", max_eval_rows=5, steps=4)
    params = write_params(tmp_path, train_behaviour_lm=p)
    stage("train_behaviour_lm").main(str(params), str(stage_data), str(tmp_path / "models"), str(tmp_path / "metrics"))
    pred = pd.read_parquet(stage_data / "predictions" / "likes" / "behaviour_lm.parquet")
    assert list(pred.columns) == ["regime", "source", "id", "pred_likes"]
    splits = pd.read_parquet(stage_data / "splits.parquet")
    for r in ("random", "unseen_brand", "unseen_time"):  # every val+test row of every regime: evaluate needs them
        assert len(pred[pred.regime == r]) == int((splits[r] != "train").sum())
    assert pred["pred_likes"].notna().all()
    m = json.loads((tmp_path / "metrics" / "train_behaviour_lm.json").read_text())
    rnd = m["random"]
    assert rnd["train_with_image"] > 0 and rnd["train_text_only"] > 0 and rnd["projection_grad_norm_step1"] > 0
    assert rnd["lm_answered_rows"] == 10 and rnd["rows_not_answered_by_lm_took_fallback"] == 14
    assert m["unseen_time"]["lm_answered_rows"] == 0
    assert m["unseen_time"]["fallback_missing_rows_took_train_median"] == 1
    out = capsys.readouterr().out
    assert "NOT TRAINED" in out and "unparsable" in out
    assert (tmp_path / "models" / "behaviour_lm" / "random" / "projector.pt").is_file()
    assert (tmp_path / "dvclive" / "train_behaviour_lm" / "random").is_dir()

    # tweetsim predict-likes --model lm on an official file: images where the manifest has them
    from tweetsim.apps.cli import main as tweetsim_main
    from tweetsim.data.load import read_official

    src = Path(__file__).resolve().parents[1] / "data" / "sample" / "official" / "behaviour_simulation_test_time.xlsx"
    pd.read_excel(src, nrows=4).to_csv(tmp_path / "in.csv", index=False)
    rows, _ = read_official(tmp_path / "in.csv")
    media, recs = tmp_path / "media", []
    for i, urls in enumerate(rows["image_urls"]):
        for u in urls:
            raw = _jpeg(photo(100 + i))
            sha = hashlib.sha256(raw).hexdigest()
            (media / "store" / sha[:2]).mkdir(parents=True, exist_ok=True)
            (media / "store" / sha[:2] / sha).write_bytes(raw)
            recs.append({"url": u, "kind": "Photo", "status": "ok" if i < 2 else "not_fetched", "sha256": sha,
                         "path": f"store/{sha[:2]}/{sha}"})
    pd.DataFrame(recs).to_csv(media / "manifest.csv", index=False)
    rc = tweetsim_main(["predict-likes", "--model", "lm", "--input", str(tmp_path / "in.csv"), "--output",
                        str(tmp_path / "out.csv"), "--models", str(tmp_path / "models"), "--media", str(media)])
    assert rc == 0
    got = pd.read_csv(tmp_path / "out.csv")
    assert got["id"].tolist() == rows["id"].tolist() and (got["likes"] >= 0).all()
    cap = capsys.readouterr()
    assert "2 with an image, 2 text only" in cap.out and "unparsable answers took the train median" in cap.out
    assert tweetsim_main(["predict-likes", "--model", "gpt", "--input", "x", "--output", "y"]) == 2
    # a row without a valid id is kept, not answered; a header-only file gives a header-only output
    bad = pd.read_csv(tmp_path / "in.csv", dtype=str).head(2).assign(id=["abc", "7"])
    for name, table, n in (("bad", bad, 2), ("header", bad.head(0), 0)):
        table.to_csv(tmp_path / f"{name}.csv", index=False)
        assert tweetsim_main(["predict-likes", "--model", "lm", "--input", str(tmp_path / f"{name}.csv"), "--output",
                              str(tmp_path / f"{name}_out.csv"), "--models", str(tmp_path / "models"),
                              "--media", str(media)]) == 0
        got = pd.read_csv(tmp_path / f"{name}_out.csv", dtype=str, keep_default_na=False)
        assert len(got) == n and (n == 0 or (got["status"].tolist()[0] == "rejected" and got["likes"].tolist()[0] == ""
                                             and got["likes"].tolist()[1] != ""))


def test_stage_says_loudly_when_no_image_exists(stage_data, tiny_base, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    d = tmp_path / "data"
    import shutil

    shutil.copytree(stage_data, d)
    man = pd.read_csv(d / "media" / "manifest.csv")
    man.assign(status="not_fetched", sha256="", path="").to_csv(d / "media" / "manifest.csv", index=False)
    p = tiny_params(tiny_base, regimes=["unseen_time"], fallback_model="fb", max_eval_rows=2, steps=2)
    stage("train_behaviour_lm").main(str(write_params(tmp_path, train_behaviour_lm=p)), str(d), str(tmp_path / "models"),
                                     str(tmp_path / "metrics"))
    out = capsys.readouterr().out
    assert "NO row had a readable image file" in out and "EVERY row fell back to its" in out


def test_quantization_refused_before_loading(tiny_base, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: 4-bit may run")
    p = tiny_params(tiny_base, quantization="4bit")
    with pytest.raises(llm.QuantizationUnavailable):
        B.build_model(BehaviourLMConfig.from_params(p), feat_dim=16)
