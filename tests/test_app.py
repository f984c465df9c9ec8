"""The web app through Flask's own test client: the flows on fake services (fast, exact), then once
on real services loaded from tiny real artefacts (likes stages on sample rows with a tiny random
classifier, a tiny random Llama + LoRA adapter, the packaged EfficientNet-Lite0 and OCR models)."""

import io
import re
from html import unescape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import llm_train_config
from PIL import Image, ImageDraw

from tweetsim.apps import serve as A
from tweetsim.data.schema import SCHEMA

from stages_helper import FAKE_INFERENCE

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["0–9", "10–99", "100+"]




class Fakes:
    """Deterministic stand-ins that record what the app passes them."""

    def __init__(self):
        self.tables, self.gen_calls, self.images, self.explained, self.best_times = [], [], [], [], []

    def predict_likes(self, table):
        self.tables.append(table.copy())
        # more characters, more likes: an order the test can check
        likes = np.array([10.0 + (len(c) if isinstance(c, str) else 0) for c in table["content"]])
        probs = np.tile([0.2, 0.5, 0.3], (len(table), 1))
        return likes, probs

    def generate(self, table, n):
        self.gen_calls.append((table.copy(), n))
        return [f"draft{'!' * k} number {k}" for k in range(n)]

    def caption(self, path):
        self.images.append(Path(path).read_bytes())
        return "a photo of a tabby cat"

    def ocr(self, path):
        return "SALE\n50% OFF"

    def explain(self, table):
        self.explained.append(table.copy())
        return [{"usual_likes": 0.9, "audience": -0.4, "video": 0.0, "media": 0.1, "time": 0.2, "text": -0.05,
                 "classifier": 0.0, "bias": 2.0}] * len(table)

    def best_time(self, table):
        """The real tweetsim.likes.besttime.best_time over a fake predictor whose likes peak at 17h."""
        from tweetsim.likes.besttime import best_time

        class Hourly:
            state = type("State", (), {"context": None})()
            p = FAKE_INFERENCE

            def predict_with_probs(self, rows, context=None):
                h = rows["date"].dt.hour.to_numpy()
                return 100.0 - (h - 17) ** 2 / 10, None

        self.best_times.append(table.copy())
        return best_time(Hourly(), table, top=3)

    def services(self, **kw):
        return A.Services(predict_likes=self.predict_likes, bucket_labels=LABELS, generate=self.generate,
                          caption=self.caption, ocr=self.ocr, explain=self.explain, best_time=self.best_time,
                          info={"likes": "fake"}, **kw)


def png(w=64, h=48, color=(200, 30, 30)) -> bytes:
    im = Image.new("RGB", (w, h), color)
    ImageDraw.Draw(im).rectangle([4, 4, w // 2, h // 2], fill=(255, 255, 255))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def post(client, image: bytes | None = None, filename="cat.png", **fields):
    data = {"brand": "nike", "account": "@nikestore", "date": "2021-05-03", "time": "14:30", "draft": "Just do it",
            "n": "3", **fields}
    if image is not None:
        data["image"] = (io.BytesIO(image), filename)
    return client.post("/", data=data, content_type="multipart/form-data")


def text(resp) -> str:
    """The page as a reader sees it: tags dropped, whitespace collapsed (newlines inside OCR text kept)."""
    plain = unescape(re.sub(r"<[^>]+>", " ", resp.get_data(as_text=True)))
    return re.sub(r"[ \t]*\n[ \t\n]*", "\n", re.sub(r"[ \t]+", " ", plain))


@pytest.fixture
def fakes():
    return Fakes()


@pytest.fixture
def client(fakes):
    return A.create_app(fakes.services(), max_upload_mb=1, max_pixels=1_000_000).test_client()


def test_form_page(client):
    r = client.get("/")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    for name in ("brand", "account", "date", "time", "image", "draft", "n"):
        assert f'name="{name}"' in html
    assert 'enctype="multipart/form-data"' in html
    assert client.get("/static/app.css").status_code == 200


def test_full_flow_with_image(client, fakes):
    img = png()
    r = post(client, image=img)
    assert r.status_code == 200
    page = text(r)
    # the post's likes (10 + len("Just do it")), its bucket probabilities, caption, ocr
    assert "20 likes" in page and "50%" in page and "100+" in page
    assert "a photo of a tabby cat" in page and "SALE" in page and "50% OFF" in page
    # drafts sorted by their own predicted likes, most first
    drafts = re.findall(r"(\d+) likes\s+draft(!*) number (\d)", page)
    assert [d[2] for d in drafts] == ["2", "1", "0"]
    assert [int(d[0]) for d in drafts] == [10 + len("draft!! number 2"), 10 + len("draft! number 1"),
                                           10 + len("draft number 0")]
    # what the models saw: the normalised schema, one Photo, the metadata of the form
    (meta, n), = fakes.gen_calls
    assert n == 3 and len(meta) == 1 and meta["content"].isna().all()
    table = fakes.tables[-1]
    assert set(SCHEMA.names) <= set(table.columns)
    assert table["content"].tolist() == ["Just do it", "draft number 0", "draft! number 1", "draft!! number 2"]
    assert (table["company"] == "nike").all() and (table["username"] == "nikestore").all()
    assert (table["n_photo"] == 1).all() and (table["n_media"] == 1).all() and (table["n_video"] == 0).all()
    assert (table["date"] == pd.Timestamp("2021-05-03 14:30", tz="UTC")).all()
    assert table["caption"].eq("a photo of a tabby cat").all() and table["ocr_text"].eq("SALE\n50% OFF").all()
    assert table["media"].iloc[0][0]["kind"] == "Photo"
    assert fakes.images == [img]  # the service gets the uploaded file itself
    # the post's reasons: the 3 largest factors in absolute value, with their sign in words
    assert [len(t) for t in fakes.explained] == [1] and fakes.explained[0]["content"].tolist() == ["Just do it"]
    why = page.split("Why")[1]
    assert why.index("+ the account's usual likes") < why.index("− the brand's audience size") < why.index("+ the time of posting")
    assert "the media kind" not in why.split("The three factors")[0]
    # the best time: the post's row over 168 hours from the next whole hour (UTC), 17h best
    html = r.get_data(as_text=True)
    assert len(re.search(r'<polyline class="curve" points="([^"]+)"', html).group(1).split()) == 168
    assert html.count('class="dot"') == 3
    best = re.findall(r"(\w{3} \d\d \w{3}, \d\d:00) UTC: ([\d,]+) likes", page)
    assert [b[0] for b in best] == ["Mon 03 May, 17:00", "Tue 04 May, 17:00", "Wed 05 May, 17:00"]
    assert len(fakes.best_times) == 1 and len(fakes.best_times[0]) == 1


def test_no_image_no_draft(client, fakes):
    r = post(client, draft="", n="2")
    assert r.status_code == 200
    page = text(r)
    assert "for the post without text" in page and "Image" not in re.sub(r"name=\"image\"", "", page.split("Predicted likes")[1])
    table = fakes.tables[-1]
    assert pd.isna(table["content"].iloc[0])
    assert (table["n_media"] == 0).all() and table["caption"].isna().all()
    assert len(table) == 3


@pytest.mark.parametrize("fields,message", [
    ({"brand": "   "}, "Brand: required"),
    ({"date": ""}, "Date: required"),
    ({"date": "2021-13-45"}, "cannot read"),
    ({"date": "2022"}, "Date: cannot read '2022': write the day as YYYY-MM-DD"),       # not 1 January
    ({"date": "2022-05-01T10:00+02:00"}, "the time goes in Time"),                    # two times: neither is dropped
    ({"date": "03/05/2022"}, "Date: cannot read"),
    ({"time": "25:00"}, "Time: cannot read '25:00'"),
    ({"n": "99"}, "Drafts: a whole number from 0 to 8"),
    ({"account": "two words"}, "Account:"),
])
def test_bad_fields(client, fakes, fields, message):
    r = post(client, **fields)
    assert r.status_code == 400
    page = text(r)
    assert message in page and "Traceback" not in page
    assert not fakes.tables and not fakes.gen_calls  # nothing ran
    assert ">Just do it</textarea>" in r.get_data(as_text=True)  # what was typed is kept


def test_bad_images(client, fakes):
    r = post(client, image=b"this is not an image at all", filename="notes.txt")
    assert r.status_code == 400 and "Image: not an image file" in text(r)
    r = post(client, image=png()[:60])  # truncated
    assert r.status_code == 400 and "Image: corrupt image" in text(r)
    r = post(client, image=png(1200, 1000))  # 1.2 MP > the 1 MP limit of this app
    assert r.status_code == 400 and "image too large" in text(r)
    r = post(client, image=b"\0" * 1_200_000, filename="big.png")  # bigger than the 1 MB upload limit
    assert r.status_code == 413 and "larger than the 1 MB limit" in text(r)
    assert not fakes.tables
    assert "Traceback" not in text(r)


def test_a_failing_model_is_a_note_not_a_traceback(fakes):
    def boom(table, n):
        raise RuntimeError("out of memory")

    s = fakes.services()
    s.generate = boom
    r = post(A.create_app(s).test_client())
    assert r.status_code == 200
    page = text(r)
    assert "generate failed: RuntimeError: out of memory" in page and "20 likes" in page and "Traceback" not in page

    def broken(table):
        raise ValueError("no slots")

    s.best_time = broken
    page = text(post(A.create_app(s).test_client()))
    assert "best_time failed: ValueError: no slots" in page and "+ the account's usual likes" in page
    assert "Best time to post" not in page


def test_missing_components_are_named(fakes):
    s = A.Services(predict_likes=None, generate=fakes.generate, caption=None, ocr=None,
                   missing={"likes": "FileNotFoundError: models/likes/bundle.json is missing",
                            "caption": "ImportError: no module"})
    r = post(A.create_app(s).test_client(), image=png())
    assert r.status_code == 200
    page = text(r)
    assert "likes: model not loaded (FileNotFoundError: models/likes/bundle.json is missing)" in page
    assert "caption: model not loaded" in page and "draft!! number 2" in page


def test_models_load_once(fakes):
    calls = []

    def factory():
        calls.append(1)
        return fakes.services()

    client = A.create_app(factory).test_client()
    assert client.get("/").status_code == 200 and not calls  # the form needs no model
    for _ in range(3):
        assert post(client).status_code == 200
    assert calls == [1]


def test_bucket_labels():
    assert A.bucket_labels([0, 10, 100, 1000, 10000]) == ["0–9", "10–99", "100–999", "1,000–9,999", "10,000+"]


@pytest.mark.parametrize("headers,refused", [
    ({"Host": "evil.example:8501"}, "requests for host"),           # DNS rebinding: another name for 127.0.0.1
    ({"Origin": "http://evil.example"}, "a form posted from"),       # a page of another site posting the form
    ({"Referer": "http://evil.example/page"}, "a form posted from"),
    ({"Host": "127.0.0.1:8501", "Origin": "http://127.0.0.1:8501"}, None),
    ({"Host": "[::1]:8501", "Origin": "http://[::1]:8501"}, None),
    ({}, None),                                                      # no Origin: curl, not a browser page
])
def test_foreign_hosts_and_origins_are_refused_before_any_work(client, fakes, headers, refused):
    data = {"brand": "nike", "account": "@nikestore", "date": "2021-05-03", "time": "14:30", "draft": "Just do it", "n": "1"}
    r = client.post("/", data=data, content_type="multipart/form-data", headers=headers)
    if refused:
        assert r.status_code == 403 and refused in text(r) and not fakes.gen_calls  # no model ran
    else:
        assert r.status_code == 200 and fakes.gen_calls
    if "Host" in headers:
        assert (client.get("/", headers={"Host": headers["Host"]}).status_code == 403) == bool(refused)


def test_an_oversized_text_field_is_named_as_such(fakes):
    client = A.create_app(fakes.services(), max_upload_mb=10).test_client()
    r = post(client, draft="x" * 1_000_000)  # 1 MB of draft, no image: under the upload limit
    assert r.status_code == 413 and "a text field is larger than 64 KB" in text(r) and "10 MB limit" not in text(r)
    assert not fakes.gen_calls


def test_serve_binds_localhost_only():
    import inspect

    src = inspect.getsource(A.cli)
    assert 'make_server("127.0.0.1"' in src and "--host" not in src


# ---------------------------------------------------------------- real services on tiny real artefacts
TINY = {
    "train_like_classifier.model_name": "tiny-random", "train_like_classifier.max_steps": 4,
    "train_like_classifier.eval_every": 2, "train_like_classifier.embed_components": 0,
    "train_like_classifier.progress": False, "regress_within_bucket.xgb.n_estimators": 3,
    "regress_within_bucket.xgb.min_rows": 15, "generate.max_new_tokens": 8,
    "build_prompts.caption_similarity": False, "split.regimes": ["random"], "regress_within_bucket.cli_regime": "random",
    "generate.adapter_regime": "random", "writer.cli_regime": "random", "writer.caption_similarity": False,
    "writer.reranker.n_estimators": 10,
}
CHAT = ("{% for m in messages %}{{'<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n'}}{% endfor %}"
        "{% if add_generation_prompt %}{{'<|im_start|>assistant\\n'}}{% endif %}")


def _tiny_llama(out: Path, corpus: list[str]) -> Path:
    """A randomly initialised 2-layer Llama with a small BPE tokenizer trained on `corpus`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    t = Tokenizer(models.BPE(unk_token="<unk>"))
    t.pre_tokenizer, t.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    t.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<|im_start|>", "<|im_end|>"],
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=t, unk_token="<unk>", bos_token="<|im_start|>",
                                  eos_token="<|im_end|>", pad_token="<|im_end|>")
    tok.chat_template = CHAT
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny_artefacts(tmp_path_factory, sample_table):
    """models/ (likes stages + a LoRA adapter) and params, built by the real stages and library, tiny."""
    import yaml

    from stages_helper import one_regime_deploy, stage, write_params
    from tweetsim.lm import model as llm
    from tweetsim.writer.prompts import build_examples
    from tweetsim.data.schema import write_tweets
    from tweetsim.data.splits import SplitConfig, assign

    tmp = tmp_path_factory.mktemp("app_real")
    t = sample_table
    table = (t[t["likes"].notna()].sort_values(["company", "source", "id"]).groupby("company").head(2)
             .sort_values(["source", "id"]).reset_index(drop=True))
    data, models = tmp / "data", tmp / "models"
    data.mkdir()
    write_tweets(table, data / "tweets.parquet")
    params_path = write_params(tmp, **TINY, **one_regime_deploy("random"))
    params = yaml.safe_load(params_path.read_text())
    assign(table, SplitConfig.from_params(params["split"])).to_parquet(data / "splits.parquet", index=False)
    args = (str(params_path), str(data), str(models))
    stage("train_like_classifier").main(*args, str(tmp / "dvclive"), str(tmp / "metrics"))
    for edge in params["train_like_classifier"]["bucket_edges"]:
        stage("regress_within_bucket").main(*args, str(edge))
    stage("combine_likes").main(*args, str(tmp / "plots"), str(tmp / "metrics"))
    stage("backtest_likes").main(*args)  # the held-out rows the routes' ranges are calibrated on
    stage("deploy_likes").main(*args)  # the likes models the app loads by default
    stage("baselines").main(str(params_path), str(data))  # retrieval: what select_text tunes its rule against
    stage("select_text").main(*args, str(tmp / "metrics"))

    texts = table["content"].dropna().tolist()[:200]
    base = _tiny_llama(tmp / "tiny_llama", texts + ["Brand: Account: Date: Media: photo Write the tweet."])
    tok = llm.load_tokenizer(str(base))
    model = llm.add_lora(llm.load_model(str(base), "none", "float32"), rank=4, alpha=8, dropout=0.0,
                         target_modules=["q_proj", "v_proj"])
    rows = table.dropna(subset=["content"]).head(4)
    prompts = build_examples(rows, tok)["prompt"].tolist()
    examples = [llm.encode_example(tok, p, c, 96) for p, c in zip(prompts, rows["content"])]
    llm.train_lora(model, tok, examples, llm_train_config(steps=1, batch_size=2, warmup_steps=0, max_length=96, save_every=0),
                   models / "llm" / params["generate"]["adapter_regime"])
    params["train_llm"]["model"]["name"] = str(base)
    params["ocr"]["model_dir"] = str(tmp / "paddleocr")
    params_path.write_text(yaml.safe_dump(params))
    return tmp, models, params_path


@pytest.mark.slow  # the likes chain and the writer trained for the app
def test_real_services_end_to_end(tiny_artefacts):
    tmp, models, params_path = tiny_artefacts
    s = A.load_services(models, params_path, tmp / "data" / "tweets.parquet")
    assert not s.missing, s.missing
    assert s.bucket_labels == ["0–9", "10–99", "100–999", "1,000–9,999", "10,000+"]
    # the probabilities shown are the ones behind the likes: same likes as Predictor.predict, rows sum to 1
    form, when = A.parse_form({"brand": "nike", "account": "nike", "date": "2022-05-01", "time": "10:00"})
    table = A.build_table(form, when, None, ["Just do it <hyperlink>", None], None, None)
    likes, probs = s.predict_likes(table)
    assert probs.shape == (2, 5) and np.allclose(probs.sum(1), 1, atol=1e-4)
    assert np.allclose(likes, s.predict_likes.predictor.predict(table))
    im = Image.new("RGB", (320, 120), "white")
    from PIL import ImageFont

    ImageDraw.Draw(im).text((20, 30), "SUMMER SALE", fill="black", font=ImageFont.load_default(size=40))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    client = A.create_app(s).test_client()
    r = post(client, image=buf.getvalue(), n="2")
    page = text(r)
    assert r.status_code == 200 and "Traceback" not in page and "failed" not in page, page
    assert re.search(r"[\d,]+ likes", page) and "10,000+" in page
    assert re.search(r"80% range: [\d,]+ – [\d,]+ likes", page)  # the deploy fit's conformal range
    assert s.info["likes"].startswith(f"{models}/likes/deploy (routes account, brand, new_brand")
    assert re.search(r"Answered by the (account|brand|new_brand) model: ", page)  # the router's route
    assert "a photo of" in page  # EfficientNet-Lite0's description
    assert "SUMMER" in page.upper() or "SALE" in page.upper()  # the OCR read the banner
    assert len(re.findall(r"most likely bucket", page)) >= 1  # at least one distinct draft, with its own likes
    # the post's 3 reasons (real tree contributions) and its 168-slot best-time chart
    assert len(re.findall(r"^[+−] the ", page.split("Why")[1], re.M)) == 3
    html = r.get_data(as_text=True)
    assert len(re.search(r'<polyline class="curve" points="([^"]+)"', html).group(1).split()) == 168
    assert len(re.findall(r"\d\d:00 UTC: [\d,]+ likes", page)) == 3
    factors = s.explain(table)
    assert np.allclose([sum(f.values()) for f in factors], np.log1p(likes), atol=1e-2)  # same rows as above
    # the drafts come from the default writer (tweetsim.writer): the best distinct tweets of the post's pool
    assert s.info["writer"].startswith("tweetsim.writer (reranker, ") and isinstance(s.generate, A.SelectWriterService)
    table = A.build_table(*A.parse_form({"brand": "nike", "account": "nike", "date": "2022-05-01", "time": "10:00"}),
                          None, [None], None, None)
    drafts = s.generate(table, 3)
    pool = set(s.generate.writer.pool.texts)
    assert 1 <= len(drafts) == len(set(drafts)) <= 3 and all(d in pool or "nike" in d.lower() for d in drafts)
    # --writer lm keeps the LM's sampled drafts
    lm = A.load_services(models, params_path, tmp / "data" / "tweets.parquet", writer="lm")
    assert isinstance(lm.generate, A.WriterService) and not lm.missing
