"""caption stage: precomputed captions kept, the default EfficientNet-Lite0 captioner and embedder,
the CLIP embedder and its stand-in, the BLIP / BLIP-2 / ViT-GPT2 code paths on tiny random models
loaded through the production `from_pretrained` path, corrupt / animated / very large files, the
cache (cold and warm), sharding and merge."""

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from stages_helper import ROOT, SHIPPED, stage, write_params
from test_ocr import gif_bytes, make_dataset, text_image, to_bytes
from tweetsim.vision import caption as cap
from tweetsim.vision import images as imgs
from tweetsim.vision.config import CaptionConfig

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + "a the photo of cat dog man on with logo red blue".split() + list("bdefghijklmnopqrstuvwxyz")
TARGET = "cat"
VISION = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8)


def photo(seed: int, size=(320, 240)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


# ---------------------------------------------------------------- unit
def test_imagenet_labels_and_description():
    labels = cap.imagenet_labels()
    assert len(labels) == 1000 and labels[0] == "tench" and labels[281] == "tabby"
    p = np.zeros(1000)
    p[281], p[282], p[285], p[0] = 0.6, 0.2, 0.1, 0.01
    assert cap.describe_labels(p, top_k=3, min_prob=0.05) == "a tabby, possibly a tiger cat or an Egyptian cat"
    assert cap.describe_labels(p, top_k=3, min_prob=0.15) == "a tabby, possibly a tiger cat"
    assert cap.describe_labels(p, top_k=1) == "a tabby"


@pytest.fixture(scope="module")
def effnet():
    return cap.EfficientNetLite0(top_k=3, min_prob=0.05, device="cpu")


def test_efficientnet_batched_equals_one_by_one(effnet):
    ims = [photo(i) for i in range(3)] + [text_image("hello")]
    batched = effnet.run(ims)
    single = [effnet.run([im])[0] for im in ims]
    for b, s in zip(batched, single):
        assert b["caption"] == s["caption"] and b["caption"].startswith(("a ", "an "))
        assert b["embedding"].shape == (1280,) and abs(np.linalg.norm(b["embedding"]) - 1) < 1e-5
        assert np.allclose(b["embedding"], s["embedding"], atol=1e-4)
    pool = cap.split_pool(effnet, 2)
    split = cap.run_split(effnet, ims + ims[:1], 2, pool)  # 5 slices of 1, two at a time
    pool.shutdown()
    assert [o["caption"] for o in split] == [o["caption"] for o in batched + batched[:1]]
    assert all(np.allclose(o["embedding"], b["embedding"], atol=1e-4) for o, b in zip(split, batched + batched[:1]))
    assert cap.split_pool(effnet, 1) is None


# ---------------------------------------------------------------- tiny Hugging Face models
def _steer(model, tok, lm_norm: str | None):
    """Make a random model always emit TARGET, so decoding can be checked exactly."""
    import torch

    tid = tok.convert_tokens_to_ids(TARGET)
    out = model.get_output_embeddings()
    with torch.no_grad():
        if lm_norm is None:  # BLIP: the prediction head has a bias
            model.text_decoder.cls.predictions.bias.zero_()
            model.text_decoder.cls.predictions.bias[tid] = 50.0
        else:  # final layer norm outputs ones; only TARGET's output row responds
            norm = dict(model.named_modules())[lm_norm]
            norm.weight.zero_()
            norm.bias.fill_(1.0)
            out.weight.zero_()
            out.weight[tid] = 1.0


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    import torch
    import transformers as tf

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny")
    tok = tf.BertTokenizer(vocab={w: i for i, w in enumerate(WORDS)})
    V = len(tok)
    ip = tf.BlipImageProcessor(size={"height": 32, "width": 32})
    text = dict(vocab_size=V, hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2)
    paths = {}

    blip = tf.BlipForConditionalGeneration(tf.BlipConfig(
        vision_config=VISION, text_config=dict(**text, encoder_hidden_size=32, bos_token_id=2, eos_token_id=3, pad_token_id=0, sep_token_id=3)))
    _steer(blip, tok, None)
    paths["blip"] = root / "blip"
    blip.save_pretrained(paths["blip"])
    tf.BlipProcessor(image_processor=ip, tokenizer=tok).save_pretrained(paths["blip"])

    proc2 = tf.Blip2Processor(image_processor=ip, tokenizer=tf.BertTokenizer(vocab={w: i for i, w in enumerate(WORDS)}), num_query_tokens=4)
    blip2 = tf.Blip2ForConditionalGeneration(tf.Blip2Config(
        vision_config=VISION, qformer_config=dict(**text, encoder_hidden_size=32),
        text_config=dict(model_type="opt", vocab_size=len(proc2.tokenizer), hidden_size=32, ffn_dim=37, num_hidden_layers=1,
                         num_attention_heads=2, word_embed_proj_dim=32, bos_token_id=2, eos_token_id=3, pad_token_id=0,
                         max_position_embeddings=64),
        num_query_tokens=4, image_token_index=proc2.tokenizer.convert_tokens_to_ids("<image>")))
    _steer(blip2, proc2.tokenizer, next(n for n, _ in blip2.named_modules() if n.endswith("final_layer_norm")))
    paths["blip2"] = root / "blip2"
    blip2.save_pretrained(paths["blip2"])
    proc2.save_pretrained(paths["blip2"])

    vcfg = tf.VisionEncoderDecoderConfig.from_encoder_decoder_configs(
        tf.ViTConfig(**VISION), tf.GPT2Config(vocab_size=V, n_embd=32, n_layer=1, n_head=2, n_positions=64, bos_token_id=2, eos_token_id=3, pad_token_id=0))
    vcfg.decoder_start_token_id, vcfg.pad_token_id, vcfg.eos_token_id = 2, 0, 3
    vit = tf.VisionEncoderDecoderModel(vcfg)
    vit.generation_config.decoder_start_token_id, vit.generation_config.pad_token_id, vit.generation_config.eos_token_id = 2, 0, 3
    _steer(vit, tok, next(n for n, _ in vit.named_modules() if n.endswith("ln_f")))
    paths["vit-gpt2"] = root / "vitgpt2"
    vit.save_pretrained(paths["vit-gpt2"])
    tf.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(paths["vit-gpt2"])
    tok.save_pretrained(paths["vit-gpt2"])

    clip = tf.CLIPModel(tf.CLIPConfig(vision_config=VISION, text_config=dict(**text, max_position_embeddings=16), projection_dim=16))
    paths["clip"] = root / "clip"
    clip.save_pretrained(paths["clip"])
    tf.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(paths["clip"])
    return paths


@pytest.mark.parametrize("backend", ["blip", "blip2", "vit-gpt2"])
def test_hf_captioners_generate_through_from_pretrained(tiny_models, backend):
    c = cap.HFCaptioner(backend, str(tiny_models[backend]), max_new_tokens=3, device="cpu")
    out = c.run([photo(1), photo(2, (40, 90)), text_image("x")])
    assert [o["caption"] for o in out] == [" ".join([TARGET] * 3)] * 3
    assert c.id == f"{backend}:{tiny_models[backend]}"


def test_hf_captioner_without_weights_is_a_clear_error(tmp_path):
    with pytest.raises(OSError, match="cannot load"):
        cap.HFCaptioner("blip2", str(tmp_path / "nothing"))
    with pytest.raises(ValueError, match="model_name"):
        cap.HFCaptioner("blip", None)


def test_clip_embedder_and_stand_in(tiny_models, caplog):
    caplog.set_level("INFO", logger="tweetsim")
    c, e = cap.load_models(CaptionConfig.from_params({**SHIPPED["caption"], "embedding": "clip", "clip_model": str(tiny_models["clip"]),
                                                      "device": "cpu"}))
    msgs = [r.getMessage() for r in caplog.records]
    assert isinstance(e, cap.ClipEmbedder) and not msgs
    v = e.run([photo(3), photo(4)])
    assert v[0]["embedding"].shape == (16,) and abs(np.linalg.norm(v[0]["embedding"]) - 1) < 1e-5
    assert not np.allclose(v[0]["embedding"], v[1]["embedding"])
    c, e = cap.load_models(CaptionConfig.from_params({**SHIPPED["caption"], "embedding": "clip",
                                                      "clip_model": "openai/clip-vit-base-patch32", "device": "cpu"}))
    msgs = [r.getMessage() for r in caplog.records]
    assert e is c and e.name == "efficientnet_lite0" and "STAND IN" in msgs[0]


# ---------------------------------------------------------------- the stage
@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    big = photo(7, (6000, 4000))
    return make_dataset(tmp_path_factory.mktemp("capdata"), [
        {"id": 1, "data": to_bytes(photo(1), "JPEG")},
        {"id": 2, "data": to_bytes(photo(2), "JPEG"), "caption": "a given caption"},
        {"id": 3, "data": None, "caption": "precomputed only"},
        {"id": 4, "data": None},
        {"id": 5, "data": b"\xff\xd8\xff\xe0 truncated jpeg"},
        {"id": 6, "kind": "Gif", "data": gif_bytes(["one", "two", "three"])},
        {"id": 7, "data": to_bytes(big, "JPEG")},
        {"id": 8, "kind": "Video", "data": to_bytes(photo(8), "JPEG")},
        {"id": 9, "parts": [("Photo", to_bytes(photo(1), "JPEG")), ("Photo", to_bytes(photo(9), "PNG"))]},
    ])


def run_stage(data, tmp, flags=(), **over):
    params = write_params(tmp, **{"caption.cache_dir": str(tmp / "cache"), "caption.progress": False, "caption.device": "cpu",
                                  "caption.frames": 3, "caption.batch_size": 4, **over})
    stage("caption").main(str(params), str(data), *flags)
    if "--shard" in flags:
        return None
    return pq.read_table(data / "captions.parquet").to_pandas().set_index("id")


def test_caption_stage_end_to_end_cache_and_shards(dataset, tmp_path, capsys):
    out = run_stage(dataset, tmp_path)
    err = capsys.readouterr()
    assert "2 of 9 rows have media but NO image file" in err.err and "STAND IN" in err.err
    assert list(out.index) == list(range(1, 10))
    src = out["caption_source"]
    assert src[1] == "efficientnet_lite0" and out.caption[1].startswith("a photo of a")
    assert src[2] == "precomputed" and out.caption[2] == "a given caption" and out.embedding[2] is not None
    assert src[3] == "precomputed" and out.status[3] == "no_image_file" and out.embedding[3] is None
    assert pd.isna(src[4]) and pd.isna(out.caption[4]) and "not_fetched" in out.reason[4]
    assert out.status[5] == "unreadable" and pd.isna(out.caption[5])
    assert out.caption[6].startswith("an animated gif of")
    assert out.caption[7].startswith("a photo of") and out.status[7] == "ok"  # 6000x4000 read fine
    assert out.caption[8].startswith("a video showing")
    assert out.n_images_read[9] == 2 and out.caption[9].startswith(out.caption[1] + " | ")
    emb = np.stack(out.embedding[[1, 2, 6, 7, 8, 9]].to_numpy())
    assert emb.shape == (6, 1280) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)
    assert set(out.embedding_backend.dropna()) == {"efficientnet_lite0"}
    rejects = pd.read_csv(dataset / "caption_rejects.csv")
    assert rejects.id.tolist() == [5] and rejects.reason[0].startswith(("corrupt", "not an image"))
    assert "cache 0 hits / 7 misses" in err.out  # 7 distinct files (id 9 reuses id 1's)
    first = (dataset / "captions.parquet").read_bytes()

    run_stage(dataset, tmp_path)
    assert "cache 6 hits / 1 misses" in capsys.readouterr().out  # the corrupt file is re-checked
    assert (dataset / "captions.parquet").read_bytes() == first

    rejects_first = (dataset / "caption_rejects.csv").read_bytes()
    for shards in ([0], [0, 1, 2]):  # dvc.yaml's caption_shard@K then the caption merge, as dvc repro runs them
        for k in shards:
            run_stage(dataset, tmp_path, ("--shard", str(k)), **{"caption.shards": shards})
        run_stage(dataset, tmp_path, ("--merge",), **{"caption.shards": shards})
        assert (dataset / "captions.parquet").read_bytes() == first
        assert (dataset / "caption_rejects.csv").read_bytes() == rejects_first
    sizes = [pq.read_metadata(dataset / "shards" / "caption" / f"captions-{k}.parquet").num_rows for k in range(3)]
    assert sum(sizes) == 9 and min(sizes) > 0

    again = run_stage(dataset, tmp_path, **{"caption.recompute": True})
    assert again.caption_source[2] == "efficientnet_lite0" and again.caption[3] == "precomputed only"


def test_caption_stage_with_tiny_blip_and_clip(dataset, tmp_path, tiny_models, capsys):
    out = run_stage(dataset, tmp_path, **{"caption.backend": "blip", "caption.model_name": str(tiny_models["blip"]),
                                          "caption.clip_model": str(tiny_models["clip"]), "caption.max_new_tokens": 2})
    assert out.caption[1] == f"{TARGET} {TARGET}" and out.caption_source[1] == "blip"
    assert out.caption[6] == f"{TARGET} {TARGET}"  # three GIF frames, one distinct caption
    assert out.caption_source[2] == "precomputed"
    assert set(out.embedding_backend.dropna()) == {"clip"} and len(out.embedding[1]) == 16
    assert "STAND IN" not in capsys.readouterr().err


def test_no_image_files_runs_without_models(tmp_path, capsys):
    data = make_dataset(tmp_path, [{"id": 1, "data": None, "caption": "c"}, {"id": 2, "data": None}])
    out = run_stage(data, tmp_path, **{"caption.backend": "blip2", "caption.model_name": "not/available"})
    err = capsys.readouterr().err
    assert "2 of 2 rows have media but NO image file" in err and "no model was loaded" in err
    assert out.caption_source[1] == "precomputed" and pd.isna(out.caption_source[2]) and out.status.tolist() == ["no_image_file"] * 2


@pytest.mark.parametrize("shards,flags,message", [
    ([0, 2], ("--shard", "0"), r"caption.shards must list the shard indices 0..N-1 in order.*got \[0, 2\]"),
    ([1], ("--merge",), r"caption.shards must list .*got \[1\]"),
    ([], (), r"caption.shards must list .*got \[\]"),
    ([0, 1], ("--shard", "2"), r"--shard '2': caption.shards lists shards 0..1"),
])
def test_bad_shards_are_a_clear_error(tmp_path, shards, flags, message):
    data = make_dataset(tmp_path, [{"id": 1, "data": None}])
    with pytest.raises(SystemExit, match=message):
        run_stage(data, tmp_path, flags, **{"caption.shards": shards})


def test_merge_names_a_shard_written_with_another_n(tmp_path):
    data = make_dataset(tmp_path, [{"id": i, "data": None} for i in range(1, 13)])  # 0-of-3 holds ids 9-11 of 1-of-2
    for k in range(2):
        run_stage(data, tmp_path, ("--shard", str(k)), **{"caption.shards": [0, 1]})
    run_stage(data, tmp_path, ("--shard", "0"), **{"caption.shards": [0, 1, 2]})  # overwrites shard 0 with 0-of-3
    with pytest.raises(SystemExit, match=r"captions-0.parquet holds tweet .* of another shard.*re-run caption_shard@0"):
        run_stage(data, tmp_path, ("--merge",), **{"caption.shards": [0, 1]})
    (data / "shards" / "caption" / "captions-1.parquet").unlink()
    with pytest.raises(SystemExit, match=r"missing shard outputs .*captions-1.parquet"):
        run_stage(data, tmp_path, ("--merge",), **{"caption.shards": [0, 1]})


@pytest.mark.slow  # two processes under accelerate launch
def test_accelerate_launch_two_processes_equals_one_run(dataset, tmp_path):
    """`accelerate launch --num_processes 2` on CPU (gloo): each process captions every other row, the
    first merges; the files equal a single process's byte for byte. (`--cpu` would start a single
    process on one machine: accelerate starts several CPU processes only through mpirun, so the
    test uses the multi-GPU launcher, torchrun, with CUDA hidden.)"""
    import os
    import socket
    import subprocess
    import sys

    common = {"caption.num_threads": 1, "caption.workers": 1}
    run_stage(dataset, tmp_path, **common)
    single = {f: (dataset / f).read_bytes() for f in ("captions.parquet", "caption_rejects.csv")}
    (dataset / "captions.parquet").unlink()
    launched = tmp_path / "launched"
    launched.mkdir()
    params = write_params(launched, **{"caption.cache_dir": str(launched / "cache"), "caption.progress": False,
                                       "caption.frames": 3, "caption.batch_size": 4, **common})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                           "--main_process_port", str(port), str(ROOT / "stages" / "caption.py"), str(params), str(dataset)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "process 0 of 2" in done.stdout and "process 1 of 2" in done.stdout, done.stdout
    assert done.stdout.count("efficientnet_lite0, ") == 2, done.stdout  # each process ran the model
    assert {f: (dataset / f).read_bytes() for f in single} == single
    assert not list(dataset.glob(".*part*"))  # the processes' parts are gone


def test_a_gif_of_very_many_frames_is_read_in_bounded_time(tmp_path):
    """Frames are spread over the first images.MAX_FRAMES of an animation: a GIF of 20,000 frames
    is read without counting (decoding) every frame (8x8 here: smaller sizes are refused as degenerate)."""
    import time

    from PIL import Image

    from tweetsim.vision import images as imgs

    path = tmp_path / "long.gif"
    frames = [Image.new("L", (8, 8), i % 256) for i in range(20_000)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=20, loop=0)
    t0 = time.perf_counter()
    got = imgs.read_frames(path, frames=4)
    seconds = time.perf_counter() - t0
    assert len(got) == 4 and seconds < 5  # counting all 20,000 frames is what this bounds
    with Image.open(path) as im:
        assert imgs._frames_up_to(im, imgs.MAX_FRAMES) == imgs.MAX_FRAMES and im.tell() == 0
