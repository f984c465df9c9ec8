"""Prompt format: metadata verbalisation, placeholders kept, exemplars from the training split only,
chat template, and the build_prompts stage on a tiny fixture."""

from pathlib import Path

import pandas as pd
import yaml

from tweetsim.text.retrieval import Retriever
from tweetsim.lm.prompts import header_lines, media_lines, media_phrase
from tweetsim.writer.prompts import build_examples, render, verbalise

ROOT = Path(__file__).resolve().parents[1]


def _table() -> pd.DataFrame:
    from tweetsim.data.load import _join_accounts, normalise

    photo = "[Photo(previewUrl='https://pbs.twimg.com/media/a.jpg', fullUrl='https://pbs.twimg.com/media/a.jpg')]"
    raw = pd.DataFrame({
        "id": ["1", "2", "3", "4"],
        "date": ["2021-01-01 10:00:00", "2021-02-01 10:00:00", "2021-03-01 10:00:00", "2021-05-03 10:00:00"],
        "likes": ["5", "7", "9", "1204"],
        "content": ["Old news <hyperlink>", "Hello <mention>! <hyperlink>", "TEST ROW SECRET", "Step into spring <hyperlink>"],
        "username": ["nike", "nike", "nike", "nike"],
        "media": ["[]", photo, "[]", photo],
        "inferred company": ["nike"] * 4,
    })
    rows, rejects = normalise(raw, "train_rows", "train_rows.csv")
    assert not rejects
    return _join_accounts(rows, [], [])


class _Tok:
    """Just enough of a tokenizer for render(): no chat template of its own."""

    chat_template = None

    def apply_chat_template(self, messages, tokenize, add_generation_prompt, chat_template):
        from jinja2 import Template

        return Template(chat_template).render(messages=messages, add_generation_prompt=add_generation_prompt)


def test_verbalise_fields_and_placeholders():
    row = {"company": "nike", "username": "nikestore", "date": pd.Timestamp("2021-05-03 10:00", tz="UTC"),
           "likes": 1204, "n_photo": 0, "n_video": 1, "n_gif": 0, "video_duration": 31.2, "video_views": 12344.0,
           "caption": "a man  running\non a track", "ocr_text": "JUST DO IT"}
    text = verbalise(row, [("@nikestore", "Step into spring. <hyperlink> <mention>")])
    assert text.splitlines() == [
        "Brand: nike", "Account: @nikestore", "Date: 2021-05-03, Monday", "Target likes: 1204",
        "Media: 1 video (31 s, 12,344 views)", "Media description: a man running on a track",
        "Text in the media: JUST DO IT", "Earlier tweet by @nikestore: Step into spring. <hyperlink> <mention>",
        "Write the tweet."]
    # unknown fields are left out, not written as 'nan'
    sparse = verbalise({"company": "", "username": "x", "date": pd.NaT, "likes": pd.NA, "caption": float("nan")})
    assert sparse.splitlines() == ["Account: @x", "Media: no media", "Write the tweet."]
    assert media_phrase({"n_photo": 2, "n_gif": 1}) == "2 photos and 1 GIF"
    long = verbalise({"caption": "word " * 200}, max_field_chars=50)
    assert max(len(line) for line in long.splitlines()) <= len("Media description: ") + 50


def test_neutral_lines_carry_no_product_words():
    """tweetsim.lm.prompts words a row's fields only: the target likes, exemplars and the instruction
    are the writer's (tweetsim.writer.prompts), the likes question the behaviour LM's."""
    row = {"company": "nike", "username": "nikestore", "date": pd.Timestamp("2021-05-03 10:00", tz="UTC"),
           "likes": 1204, "n_photo": 1, "caption": "a shoe", "ocr_text": "JUST DO IT", "content": "new shoes"}
    lines = header_lines(row) + media_lines(row)
    assert lines == ["Brand: nike", "Account: @nikestore", "Date: 2021-05-03, Monday", "Media: 1 photo",
                     "Media description: a shoe", "Text in the media: JUST DO IT"]
    assert verbalise(row).splitlines() == lines[:3] + ["Target likes: 1204"] + lines[3:] + ["Write the tweet."]


def test_exemplars_come_from_training_rows_only():
    table = _table()
    train, test = table[table["id"] != 3], table[table["id"] == 3]
    retr = Retriever(train)
    ex = build_examples(pd.concat([test, train]), _Tok(), retr, k=2)
    for user in ex["user"]:
        assert "TEST ROW SECRET" not in user  # the test tweet never leaks into a prompt
    # the test row (2021-03-01) gets the latest earlier training tweet of the account first
    first = ex["user"].iloc[0].splitlines()
    assert first[-3:] == ["Earlier tweet by @nike: Hello <mention>! <hyperlink>",
                          "Earlier tweet by @nike: Old news <hyperlink>", "Write the tweet."]
    # a training row never retrieves itself
    for (_, r), user in zip(train.iterrows(), ex["user"].iloc[1:]):
        assert f": {r['content']}\n" not in user
    prompt = ex["prompt"].iloc[0]
    assert prompt.startswith("### system\n") and prompt.endswith("### assistant\n")
    assert "### user\nu\n" in render(_Tok(), "u")  # a tokenizer without a chat template gets FALLBACK_TEMPLATE


def test_build_prompts_stage(tmp_path):
    from stages_helper import stage
    from test_llm import _tiny_tokenizer

    from tweetsim.data.schema import write_tweets

    data = tmp_path / "data"
    data.mkdir()
    table = _table()
    write_tweets(table, data / "tweets.parquet")
    side = {1: "train", 2: "train", 3: "test", 4: "val"}
    pd.DataFrame({"source": table["source"], "id": table["id"], **{r: table["id"].map(side) for r in
                                                                  ("random", "unseen_brand", "unseen_time")}}
                 ).to_parquet(data / "splits.parquet", index=False)
    _tiny_tokenizer().save_pretrained(tmp_path / "tok")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train_llm"]["model"]["name"] = str(tmp_path / "tok")
    params["build_prompts"].update(caption_similarity=False, exemplars=1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    stage("build_prompts").main(str(tmp_path / "params.yaml"), str(data))
    out = pd.read_parquet(data / "prompts.parquet")
    assert list(out.columns) == ["regime", "source", "id", "split", "user", "prompt", "completion"]
    assert len(out) == 3 * 4 and set(out["regime"]) == set(params["split"]["regimes"])
    assert not out["user"].str.contains("TEST ROW SECRET").any()
    test = out[(out["regime"] == "random") & (out["id"] == 3)].iloc[0]
    assert test["split"] == "test" and test["completion"] == "TEST ROW SECRET"
    assert test["prompt"].startswith("<|im_start|>system\n") and test["prompt"].endswith("<|im_start|>assistant\n")
    assert "Earlier tweet by @nike: Hello <mention>! <hyperlink>" in test["prompt"]
