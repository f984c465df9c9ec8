"""The tweet writer on a tiny random Llama with a tiny offline tokenizer: masking, LoRA training,
checkpoint resume, adapter reload + generation, `tweetsim generate`, the 4-bit guard."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from tweetsim.lm import model as llm
from conftest import gen_config, llm_train_config
from tweetsim.lm.generate import generate, postprocess

ROOT = Path(__file__).resolve().parents[1]
SMOL_TEMPLATE = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
                 "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
CORPUS = ["Brand: nike Account: @nike Date: 2021-05-03, Monday Media: 1 photo Write the tweet.",
          "Step into spring with the new collection <hyperlink>", "Thanks <mention> for the love! #fun",
          "Target likes: 1204 Earlier tweet by @nike: Just do it. Media description: a man running"]


def _tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
    from transformers import PreTrainedTokenizerFast

    t = Tokenizer(models.BPE(unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    specials = ["<unk>", "<|im_start|>", "<|im_end|>"]
    t.train_from_iterator(CORPUS * 5, trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=t, unk_token="<unk>", bos_token="<|im_start|>",
                                  eos_token="<|im_end|>", pad_token="<|im_end|>")
    tok.chat_template = SMOL_TEMPLATE
    return tok


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer Llama + tokenizer saved as a model folder."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _tiny_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    out = tmp_path_factory.mktemp("tiny_llama")
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _examples(tok, n=12, max_length=96):
    from tweetsim.writer.prompts import render, verbalise

    rows = [{"company": "nike", "username": "nike", "date": pd.Timestamp("2021-05-03", tz="UTC"), "likes": 10 * i,
             "n_photo": 1} for i in range(n)]
    return [llm.encode_example(tok, render(tok, verbalise(r)), CORPUS[1 + i % 2], max_length) for i, r in enumerate(rows)]


def test_examples_encoded_in_one_batch_equal_one_by_one(tiny_base):
    from tweetsim.writer.prompts import render, verbalise

    tok = llm.load_tokenizer(str(tiny_base))
    prompts = [render(tok, verbalise({"company": c, "username": c, "date": pd.Timestamp("2021-05-03", tz="UTC"), "likes": 5 * i}))
               for i, c in enumerate(["nike", "adidas", "zeta phones", "a"])]
    completions = ["Thanks <mention> for the love!", "", "new 🎉 shoes " * 30, "x"]

    def one(prompt, completion, max_length):  # the rule on one pair, each text tokenized on its own
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        c = tok(completion + llm.end_of_turn(tok), add_special_tokens=False)["input_ids"]
        c = c[:max_length // 2] if len(c) > max_length // 2 and len(p) + len(c) > max_length else c
        p = p[max(0, len(p) + len(c) - max_length):]
        return {"input_ids": p + c, "labels": [llm.IGNORE] * len(p) + c}

    for max_length in (24, 64, 512):  # completions cut, prompts cut, neither
        batch = llm.encode_examples(tok, prompts, completions, max_length)
        assert batch == [one(p, c, max_length) for p, c in zip(prompts, completions)]
        assert llm.encode_examples(tok, prompts, completions, max_length, chunk=3) == batch  # chunks of 3 and 1
        assert batch[1:2] == [llm.encode_example(tok, prompts[1], completions[1], max_length)]
    assert llm.encode_examples(tok, [], [], 64) == []


def test_completion_only_masking(tiny_base):
    tok = llm.load_tokenizer(str(tiny_base))
    prompt = tok.apply_chat_template([{"role": "user", "content": "Write the tweet."}], tokenize=False, add_generation_prompt=True)
    ex = llm.encode_example(tok, prompt, "Thanks <mention> for the love!", max_length=256)
    n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
    assert ex["labels"][:n_prompt] == [llm.IGNORE] * n_prompt
    assert ex["labels"][n_prompt:] == ex["input_ids"][n_prompt:]
    assert llm.IGNORE not in ex["labels"][n_prompt:]
    # the completion ends with the end-of-turn token, so the model learns where the tweet stops
    assert ex["labels"][-1] == tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.decode(ex["input_ids"][n_prompt:]) == "Thanks <mention> for the love!<|im_end|>"
    # too long: the prompt is cut from the left, the completion is kept whole
    short = llm.encode_example(tok, prompt, "Thanks <mention> for the love!", max_length=n_prompt)
    assert len(short["input_ids"]) == n_prompt
    assert short["labels"][-1] != llm.IGNORE and short["labels"][0] == llm.IGNORE
    # collate pads labels with IGNORE, and packing keeps each example's prompt masked
    batch = llm.collate([ex, short], tok.pad_token_id)
    assert (batch["labels"][1, len(short["input_ids"]):] == llm.IGNORE).all()
    assert batch["attention_mask"][1].sum() == len(short["input_ids"])
    packed = llm.pack([ex, ex], max_length=len(ex["input_ids"]) + 5)
    assert packed[0]["labels"][:n_prompt] == [llm.IGNORE] * n_prompt
    assert sum(len(p["input_ids"]) for p in packed) == 2 * len(ex["input_ids"])


@pytest.mark.slow  # trains twice, and once interrupted
def test_tiny_llama_trains_resumes_and_generates(tiny_base, tmp_path):
    tok = llm.load_tokenizer(str(tiny_base))
    examples = _examples(tok)
    cfg = llm_train_config(steps=4, batch_size=4, lr=5e-3, warmup_steps=1, max_length=96, save_every=2, seed=1)
    ckpt, live = tmp_path / "ckpt", tmp_path / "live"
    model = llm.add_lora(llm.load_model(str(tiny_base), "none", "float32", for_training=True), rank=4, alpha=8,
                         dropout=0.0, target_modules=["q_proj", "v_proj"])
    before = {k: v.clone() for k, v in model.named_parameters() if "lora_B" in k}
    res = llm.train_lora(model, tok, examples, cfg, tmp_path / "adapter", checkpoint_dir=ckpt, live_dir=live)
    assert res["resumed_from"] == 0 and res["steps"] == 4 and res["final_loss"] == res["final_loss"]  # not NaN
    after = dict(model.named_parameters())
    assert any(not torch.equal(before[k], after[k]) for k in before), "LoRA weights did not move"
    # sorted, not peft's set order (which changes with the hash seed): the same run writes the same bytes
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["target_modules"] == ["q_proj", "v_proj"]
    # nor the run's hub mode (HF_HUB_OFFLINE) in the tokenizer config: online and offline runs write the same files
    assert "local_files_only" not in json.loads((tmp_path / "adapter" / "tokenizer_config.json").read_text())
    assert json.loads((ckpt / "step.json").read_text())["step"] == 4
    assert len((live / "plots" / "metrics" / "train" / "loss.tsv").read_text().splitlines()) == 1 + 4

    # a longer run with the same checkpoint continues at step 4 instead of starting over
    cfg6 = llm_train_config(**{**cfg.__dict__, "steps": 6})
    model2 = llm.add_lora(llm.load_model(str(tiny_base), "none", "float32", for_training=True), rank=4, alpha=8,
                          dropout=0.0, target_modules=["q_proj", "v_proj"])
    res2 = llm.train_lora(model2, tok, examples, cfg6, tmp_path / "adapter6", checkpoint_dir=ckpt, live_dir=live)
    assert res2["resumed_from"] == 4
    assert len((live / "plots" / "metrics" / "train" / "loss.tsv").read_text().splitlines()) == 1 + 6

    # the saved adapter reloads onto a fresh base and generates, batched and one by one alike
    reloaded = llm.load_adapter(str(tiny_base), tmp_path / "adapter", "none", "float32")
    trained_sd = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    for k, v in reloaded.state_dict().items():
        if "lora_" in k:
            assert torch.allclose(v, trained_sd[k])
    from tweetsim.writer.prompts import render

    prompts = [render(tok, f"Brand: nike\nTarget likes: {n}\nWrite the tweet.") for n in (1, 22, 333)]
    gcfg = gen_config(max_new_tokens=6, batch_size=3)
    texts, stats = generate(reloaded, tok, prompts, gcfg)
    one_by_one = [generate(reloaded, tok, [p], gen_config(max_new_tokens=6, batch_size=1))[0][0] for p in prompts]
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    assert texts == one_by_one  # left padding + sorting by length must not change greedy outputs
    assert all("<|im_start|>" not in t and "Write the tweet" not in t for t in texts)  # the prompt is stripped
    assert 0 < stats["new_tokens"] <= 3 * 6
    beams, _ = generate(reloaded, tok, prompts, gen_config(max_new_tokens=4, num_candidates=2))
    sampled, _ = generate(reloaded, tok, prompts, gen_config(max_new_tokens=4, num_candidates=2, temperature=0.8))
    assert len(beams) == len(sampled) == 3


def test_merge_adapter(tiny_base, tmp_path):
    tok = llm.load_tokenizer(str(tiny_base))
    model = llm.add_lora(llm.load_model(str(tiny_base), "none", "float32"), rank=4, alpha=8, dropout=0.0,
                         target_modules=["q_proj", "v_proj"])
    llm.train_lora(model, tok, _examples(tok, 4), llm_train_config(steps=2, batch_size=2, lr=1e-2, warmup_steps=0,
                                                                   max_length=96, save_every=0), tmp_path / "a")
    merged = llm.merge_adapter(str(tiny_base), tmp_path / "a", tmp_path / "merged", "float32")
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(merged)
    x = torch.tensor([tok("Brand: nike")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(m(x).logits, llm.load_adapter(str(tiny_base), tmp_path / "a", "none", "float32")(x).logits, atol=1e-4)


def test_postprocess_stops_at_end_of_turn():
    assert postprocess(" New drop <hyperlink> \n<|im_start|>user\nmore") == "New drop <hyperlink>"
    assert postprocess("Hi <mention>!") == "Hi <mention>!"


def test_4bit_fails_clearly_without_cuda(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(llm.QuantizationUnavailable, match="needs a CUDA GPU"):
        llm.check_quantization("4bit")
    with pytest.raises(llm.QuantizationUnavailable, match="quantization=none"):
        llm.check_quantization("8bit")
    # before any loading: a folder that does not exist would otherwise fail with OSError
    with pytest.raises(llm.QuantizationUnavailable):
        llm.load_model(str(tmp_path / "no-such-model"), "4bit")
    with pytest.raises(ValueError, match="not one of"):
        llm.check_quantization("3bit")
    assert llm.check_quantization(None) == "none" and llm.check_quantization("none") == "none"
    # the stage checks before it resolves the model or reads any data
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train_llm"]["quantization"] = "4bit"
    params["train_llm"]["model"]["name"] = str(tmp_path / "no-such-model")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    from stages_helper import stage

    with pytest.raises(llm.QuantizationUnavailable):
        stage("train_llm").main(str(tmp_path / "p.yaml"), str(tmp_path / "data"), str(tmp_path / "m"), str(tmp_path / "x"))


def test_generate_cli_with_missing_optional_columns(tiny_base, tmp_path, capsys):
    from tweetsim.apps.cli import main

    tok = llm.load_tokenizer(str(tiny_base))
    model = llm.add_lora(llm.load_model(str(tiny_base), "none", "float32"), rank=4, alpha=8, dropout=0.0,
                         target_modules=["q_proj", "v_proj"])
    llm.train_lora(model, tok, _examples(tok, 4), llm_train_config(steps=1, batch_size=2, warmup_steps=0, max_length=96,
                                                                   save_every=0), tmp_path / "adapter")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train_llm"]["model"]["name"] = str(tiny_base)
    params["generate"].update(max_new_tokens=5, batch_size=2)
    params["build_prompts"]["caption_similarity"] = False
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    # no likes, no media, no inferred company, no caption; one unparsable date; ids out of order
    pd.DataFrame({"id": [30, 10, 20], "date": ["2021-05-03 10:00:00", "not a date", "2022-01-01"],
                  "username": ["nike", "adidas", None]}).to_csv(tmp_path / "in.csv", index=False)
    # a pool of earlier tweets for the exemplars
    from tweetsim.data.load import normalise
    from tweetsim.data.schema import write_tweets

    pool, _ = normalise(pd.DataFrame({"id": ["1"], "date": ["2021-01-01"], "likes": ["5"], "username": ["nike"],
                                      "media": ["[]"], "inferred company": ["nike"], "content": ["Just do it <hyperlink>"]}),
                        "train", "train.csv")
    from tweetsim.data.load import _join_accounts

    write_tweets(_join_accounts(pool, [], []), tmp_path / "pool.parquet")
    rc = main(["generate", "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv"),
               "--params", str(tmp_path / "params.yaml"), "--adapter", str(tmp_path / "adapter"),
               "--pool", str(tmp_path / "pool.parquet"), "--writer", "lm"])
    assert rc == 0
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert list(out.columns) == ["id", "content", "status", "reason"] and out["id"].tolist() == [30, 10, 20]
    assert "not a date" in capsys.readouterr().err  # the bad cell is reported, the row still answered
    # without an adapter the command says what to do instead of a traceback
    assert main(["generate", "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "o2.csv"),
                 "--params", str(tmp_path / "params.yaml"), "--adapter", str(tmp_path / "nothing"), "--writer", "lm"]) == 2
    assert "no adapter in" in capsys.readouterr().err
    # the LM's options without --writer lm: said, not ignored
    assert main(["generate", "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "o3.csv"),
                 "--params", str(tmp_path / "params.yaml"), "--adapter", str(tmp_path / "adapter")]) == 2
    assert "add --writer lm" in capsys.readouterr().err


def test_fingerprint_keys_arrays_by_their_bytes():
    # checkpoint keys hash image features as arrays (their JSON as floats took gigabytes at 200,000 rows)
    fingerprint = llm.fingerprint
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    key = fingerprint([{"ids": [1, 2], "feat": a}])
    assert key == fingerprint([{"ids": [1, 2], "feat": a.copy()}])
    b = a.copy()
    b[1, 2] += 1e-3
    assert len({key, fingerprint([{"ids": [1, 2], "feat": b}]), fingerprint([{"ids": [1, 2], "feat": a.astype(np.float64)}]),
                fingerprint([{"ids": [1, 2], "feat": a.reshape(3, 2)}]), fingerprint([{"ids": [1, 3], "feat": a}])}) == 5
    assert fingerprint(a.T) == fingerprint(np.ascontiguousarray(a.T))  # a strided view keys by its values
