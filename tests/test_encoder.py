"""The ONNX Runtime path of the text transformers (tweetsim/text/runtime.py) and the shared,
content-addressed embedding cache (tweetsim/text/embed.py)."""

import numpy as np
import pytest

from tweetsim.likes.classifier import load_classifier, predict_proba
from tweetsim.text import embed, runtime
from tweetsim.text.runtime import EncoderConfig

TEXTS = ["New drop is live 🔥 shop now at the link", "", "a", "Thanks for 1M followers! #grateful",
         "Our spring collection: lighter fabrics, brighter colours, and free shipping on every order this week"]


@pytest.mark.slow  # exports and quantizes the encoder
def test_onnx_float32_equals_torch_and_int8_stays_close(tmp_path):
    embed.clear_cache()
    ref = embed.encode(TEXTS)
    f32 = embed.encode(TEXTS, encoder=EncoderConfig("onnx", 2, str(tmp_path), 0))
    i8 = embed.encode(TEXTS, encoder=EncoderConfig("onnx-int8", 2, str(tmp_path), 0))
    assert f32.shape == i8.shape == ref.shape
    assert np.abs(f32 - ref).max() < 1e-5
    assert np.all((i8 * ref).sum(1) > 0.97)
    assert np.allclose(np.linalg.norm(i8, axis=1), 1, atol=1e-5)


def test_a_vector_depends_on_its_text_only_and_the_cache_serves_every_caller(tmp_path, monkeypatch):
    """Another order, other neighbours, another worker count, a fresh process memo: the same bytes;
    the second call reads the SQLite file instead of running the model."""
    cfg = EncoderConfig("onnx-int8", 2, str(tmp_path), 0)
    embed.clear_cache()
    first = embed.encode(TEXTS, encoder=cfg)
    embed.clear_cache(str(tmp_path))  # the process memo and the store: everything recomputed
    alone = np.stack([embed.encode([t, "other text"], encoder=EncoderConfig("onnx-int8", 1, str(tmp_path), 0))[0]
                      for t in reversed(TEXTS)])[::-1]
    assert first.tobytes() == alone.tobytes()
    embed.clear_cache()
    calls = []
    real_run = runtime.run
    monkeypatch.setattr(runtime, "run", lambda *a, **k: calls.append(a[2]) or real_run(*a, **k))
    again = embed.encode(TEXTS + ["never seen before"], encoder=cfg)
    assert again[: len(TEXTS)].tobytes() == first.tobytes()
    assert calls == [["never seen before"]]


def test_classifier_probabilities_through_onnx(tmp_path):
    tok, model = load_classifier("tiny-random", 5, seed=3)
    want = predict_proba(tok, model, TEXTS, 32, 2)
    for rt, tol in (("onnx", 1e-5), ("onnx-int8", 2e-2)):
        got = predict_proba(tok, model, TEXTS, 32, 2, encoder=EncoderConfig(rt, 2, str(tmp_path), 0))
        assert got.shape == want.shape and np.allclose(got.sum(1), 1, atol=1e-5)
        assert np.abs(got - want).max() < tol, rt
    # a retrained model gets its own export; an unchanged one reuses its file
    first = runtime.export(model, "classify", "onnx-int8", tmp_path)
    assert runtime.export(model, "classify", "onnx-int8", tmp_path) == first
    with __import__("torch").no_grad():
        next(model.parameters()).add_(0.01)
    assert runtime.export(model, "classify", "onnx-int8", tmp_path) != first


def test_int8_weights_use_7_bits_so_no_x86_kernel_saturates(tmp_path):
    """ONNX Runtime's AVX2 u8 x s8 product sums pairs in int16: 255 * 127 * 2 overflows, 255 * 64 * 2 does not."""
    import onnx
    from onnx import numpy_helper

    _, model = load_classifier("tiny-random", 5, seed=3)
    graph = onnx.load(str(runtime.export(model, "classify", "onnx-int8", tmp_path))).graph
    weights = [numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert weights and all(np.abs(w.astype(int)).max() <= 64 for w in weights)  # symmetric 7 bits: [-64, 64]


def test_rounded_vectors_lie_on_the_grid_and_the_stages_read_them_rounded(tmp_path):
    v = np.array([[0.1, -0.30001, 0.5]], np.float32)
    assert runtime.rounded(v, 0) is v
    r = runtime.rounded(v, 10)
    assert r.dtype == np.float32 and np.array_equal(r * 1024, np.rint(r * 1024)) and np.abs(r - v).max() <= 2 ** -11
    embed.clear_cache()
    raw = embed.encode(TEXTS, encoder=EncoderConfig("onnx-int8", 2, str(tmp_path), 0))
    got = embed.encode(TEXTS, encoder=EncoderConfig("onnx-int8", 2, str(tmp_path), 10))
    assert np.array_equal(got, runtime.rounded(raw, 10)) and not np.array_equal(got, raw)


def test_one_embedder_factory_builds_the_stages_embedding_callable(tmp_path):
    """text.embed.embedder: what every stage and command embeds captions with (the section's embed_model
    through the encoder runtime), or None where the section's caption_similarity is off."""
    cfg = EncoderConfig("onnx-int8", 2, str(tmp_path), 10)
    assert embed.embedder(None, cfg, enabled=False) is None
    fn = embed.embedder(None, cfg)
    assert np.array_equal(fn(TEXTS), embed.encode(TEXTS, None, encoder=cfg))
    assert EncoderConfig.from_params({"runtime": "onnx-int8", "workers": 2, "cache_dir": str(tmp_path), "round_bits": 10}) == cfg


def test_bad_runtime_is_named():
    with pytest.raises(ValueError, match="encoder.runtime.*onnx-int8"):
        EncoderConfig("onnx_int8", 2, ".cache/encoder", 0)
    with pytest.raises(ValueError, match="encoder.workers"):
        EncoderConfig("onnx", 0, ".cache/encoder", 0)
    with pytest.raises(ValueError, match="encoder.round_bits"):
        EncoderConfig("onnx", 1, ".cache/encoder", 24)


@pytest.mark.slow  # distils the static table
def test_static_table_is_distilled_once_and_a_vector_depends_on_its_text_only(tmp_path, monkeypatch):
    """embed_model static: model2vec's table distilled from the packaged MiniLM under the cache folder;
    unit vectors (zeros for a text without tokens); the same bytes whatever the neighbours and call
    order; a fresh process loads the table instead of distilling again; close texts land closer."""
    cfg = EncoderConfig("onnx-int8", 2, str(tmp_path), 0)
    embed.clear_cache()
    embed._static_model.cache_clear()
    first = embed.encode(TEXTS, "static", encoder=cfg)
    assert first.shape == (len(TEXTS), embed.STATIC_DIMS) and first.dtype == np.float32
    norms = np.linalg.norm(first, axis=1)
    assert norms[1] == 0 and np.allclose(np.delete(norms, 1), 1, atol=1e-5)
    assert len(list((tmp_path / "static").iterdir())) == 1
    embed.clear_cache()
    embed._static_model.cache_clear()
    import model2vec.distill

    monkeypatch.setattr(model2vec.distill, "distill", lambda *a, **k: pytest.fail("distilled a second time"))
    alone = np.stack([embed.encode([t, "other text"], "static", encoder=cfg)[0] for t in reversed(TEXTS)])[::-1]
    assert alone.tobytes() == first.tobytes()
    sale, sale2, earnings = embed.encode(["huge sale on running shoes today", "running shoes discounted today, big sale",
                                          "the quarterly earnings call starts at noon"], "static", encoder=cfg)
    assert sale @ sale2 > sale @ earnings + 0.2
    assert not np.allclose(embed.encode([TEXTS[4]], "static", max_length=4, encoder=cfg), first[4])
    # a table distilled under other CPU kernel switches is another table: another key, distilled anew
    embed.clear_cache()
    embed._static_model.cache_clear()
    monkeypatch.setenv("MKL_CBWR", "AUTO")
    with pytest.raises(pytest.fail.Exception, match="distilled a second time"):
        embed.encode(TEXTS, "static", encoder=cfg)
    embed._static_model.cache_clear()
