"""ONNX Runtime inference for the text transformers (the sentence encoder and the like classifier).

`encoder.runtime` in params picks the path: `torch` (the model as trained, batched, in
`train_like_classifier.inference_dtype`), `onnx` (the same weights exported to ONNX, float32) or
`onnx-int8` (the export with per-channel int8 weights and int8 activations quantised per call by
ONNX Runtime's dynamic quantisation; per-tensor weights lost too much, cosine 0.954 to float32
against 0.992, measured by bench/bench_encoder.py). The weights use 7 of the 8 bits (reduce_range):
ONNX Runtime multiplies u8 activations by s8 weights with VNNI or AMX where the CPU has them, exact,
and with AVX2's pairwise int16 sums elsewhere, which saturate at full-range weights; at 7 bits no
sum can, so every x86 path gives the same integers (docs/reproducibility.md).

The ONNX paths run each text on its own (batch of one, no padding) in `workers` sessions of one
thread each, side by side. That is what makes a text's vector a function of the text alone:
dynamic quantisation scales the activations of the whole batch, and padding changes float sums,
so a batched vector would depend on its neighbours, and a shared cache (embed.py) would then make
a stage's output depend on which stage embedded a text first. Batch one also wastes nothing on
padding; ONNX Runtime releases the GIL, so threads run on both cores.

Exports are cached under `<cache_dir>/onnx/<key>/`, the key a hash of the weights, the head and the
library versions, so a retrained classifier gets its own file and an unchanged one is exported once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np

from tweetsim.config.params import section_config

logger = logging.getLogger(__name__)

RUNTIMES = ("torch", "onnx", "onnx-int8")
KINDS = ("embed", "classify")  # mean-pooled unit vectors | class probabilities


@section_config("encoder")
class EncoderConfig:
    """params.yaml `encoder`: the inference runtime, its sessions, and where exports and embeddings are cached."""

    runtime: str
    workers: int
    cache_dir: str
    round_bits: int  # the stages' vectors are rounded to multiples of 2**-round_bits (0: as computed)

    def __post_init__(self):
        if self.runtime not in RUNTIMES:
            raise ValueError(f"encoder.runtime: unknown {self.runtime!r} ({' | '.join(RUNTIMES)})")
        if int(self.workers) < 1:
            raise ValueError(f"encoder.workers: {self.workers} (need >= 1)")
        if not 0 <= int(self.round_bits) <= 23:
            raise ValueError(f"encoder.round_bits: {self.round_bits} (0 .. 23)")

    @property
    def onnx(self) -> bool:
        return self.runtime != "torch"


def _wrapped(model, kind: str):
    import torch

    class Embed(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            h = self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

    class Classify(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            return torch.softmax(self.m(input_ids=input_ids, attention_mask=attention_mask).logits.float(), -1)

    return (Embed if kind == "embed" else Classify)(model).eval()


def weights_key(model, kind: str) -> str:
    """A hash of everything the exported graph depends on: the weights, the head, the versions."""
    import onnxruntime
    import torch

    h = hashlib.sha256(f"{kind}|{torch.__version__}|{onnxruntime.__version__}|{type(model).__name__}".encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to(torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


_export_lock = threading.Lock()


def _check(wrapped, path: Path) -> None:
    """The export must give the torch model's output at lengths other than the traced one."""
    import onnxruntime as ort
    import torch

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (3, 29):
        ids = (torch.arange(n, dtype=torch.long) % 50 + 1000).unsqueeze(0)
        want = wrapped(ids, torch.ones_like(ids)).numpy()
        got = sess.run(None, {"input_ids": ids.numpy(), "attention_mask": np.ones((1, n), np.int64)})[0]
        if not np.allclose(got, want, atol=1e-4):
            raise RuntimeError(f"ONNX export of {path.parent.name} differs from the torch model at length {n}: "
                               f"max |diff| {np.abs(got - want).max():.2e}")


def export(model, kind: str, runtime: str, cache_dir: str | Path) -> Path:
    """The model's ONNX file for `runtime` (onnx | onnx-int8), exported (and quantised) on first use."""
    import torch

    if kind not in KINDS:
        raise ValueError(f"unknown export kind {kind!r} ({' | '.join(KINDS)})")
    folder = Path(cache_dir) / "onnx" / weights_key(model, kind)
    fp32, int8 = folder / "model.onnx", folder / "model-int8-w7.onnx"
    target = int8 if runtime == "onnx-int8" else fp32
    with _export_lock:
        if target.exists():
            return target
        folder.mkdir(parents=True, exist_ok=True)
        if not fp32.exists():
            tmp = folder / f".model.{os.getpid()}.onnx"
            was_training = model.training
            wrapped = _wrapped(model, kind)
            ids = torch.ones((1, 8), dtype=torch.long)
            with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the tracer's notes on shapes it records as constants (checked below)
                torch.onnx.export(wrapped, (ids, torch.ones_like(ids)), str(tmp), dynamo=False,
                                  input_names=["input_ids", "attention_mask"], output_names=["out"], opset_version=17,
                                  dynamic_axes={"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"}, "out": {0: "b"}})
                _check(wrapped, tmp)
            model.train(was_training)
            os.replace(tmp, fp32)  # atomic: a concurrent stage sees a whole file or none
        if target is int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            tmp = folder / f".model-int8-w7.{os.getpid()}.onnx"
            quiet = lambda r: "pre-processing before quantization" not in r.getMessage()  # noqa: E731 (advice, said on root)
            logging.getLogger().addFilter(quiet)
            try:
                quantize_dynamic(str(fp32), str(tmp), per_channel=True, reduce_range=True, weight_type=QuantType.QInt8)
            finally:
                logging.getLogger().removeFilter(quiet)
            os.replace(tmp, int8)
        logger.info("exported %s model for %s: %s", kind, runtime, target)
    return target


_exported: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def model_file(model, kind: str, runtime: str, cache_dir: str | Path) -> Path:
    """export(), remembered per model object: hashing the weights costs ~0.1 s, too much for each web request.
    A model's weights must not change after its first ONNX use (training evaluates on the torch path)."""
    seen = _exported.setdefault(model, {})
    key = (kind, runtime, str(cache_dir))
    if key not in seen:
        seen[key] = export(model, kind, runtime, cache_dir)
    return seen[key]


@lru_cache(maxsize=8)
def _sessions(path: str, workers: int) -> list:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # one thread per session: the workers run side by side, and one thread makes each run deterministic
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    opts.log_severity_level = 3
    return [ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"]) for _ in range(workers)]


def rounded(vecs: np.ndarray, bits: int) -> np.ndarray:
    """`vecs` rounded to multiples of 2**-bits (float32; 0: unchanged). ONNX Runtime's float kernels are
    picked by the CPU and may differ in the last bits; on a coarser grid far fewer vectors differ."""
    if not bits:
        return vecs
    step = np.float32(2.0 ** -bits)
    return (np.rint(vecs / step) * step).astype(np.float32)


def run(path: Path, tok, texts: list[str], max_length: int, workers: int) -> np.ndarray:
    """Each text through the ONNX model on its own; rows in the order of `texts` (float32)."""
    sessions = _sessions(str(path), int(workers))
    ids = tok(list(texts), truncation=True, max_length=max_length)["input_ids"]
    out: list = [None] * len(texts)

    def work(w: int) -> None:
        sess = sessions[w]
        for i in range(w, len(ids), len(sessions)):
            x = np.asarray([ids[i]], dtype=np.int64)
            out[i] = sess.run(None, {"input_ids": x, "attention_mask": np.ones_like(x)})[0][0]

    if len(sessions) == 1 or len(texts) < 2:
        for w in range(len(sessions)):
            work(w)
    else:
        with ThreadPoolExecutor(len(sessions)) as pool:
            list(pool.map(work, range(len(sessions))))
    if not out:
        return np.zeros((0, 0), np.float32)
    return np.stack(out).astype(np.float32)
