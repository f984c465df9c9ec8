"""The image prefix shared by the behaviour LM (tweetsim.likes.behaviour_lm) and the tweet writer
(tweetsim.lm.model with `train_llm.image_prefix.enabled`):

    image files --frozen VisionEncoder--> pooled feature (mean over a tweet's images)
                --trainable Projector--> N prefix embeddings in front of the prompt (PrefixLM)

A row without a readable image gets its prefix masked out of attention (and positions), so it is
exactly the text-only model. `save_projector` / `load_projector` keep the projector beside a LoRA
adapter folder.
"""

from __future__ import annotations

import logging
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from tweetsim.config.params import from_section
from tweetsim.lm import model as llm
from tweetsim.lm.config import ProjectionConfig, VisionConfig

logger = logging.getLogger(__name__)

PROJECTOR_FILE, META_FILE = "projector.pt", "image_prefix.json"


class TinyRandomEncoder(nn.Module):
    """A seeded random conv net (tests): 32x32 pixels -> `dim` features."""

    def __init__(self, dim: int = 16, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(3, 8, 4, stride=4)
        self.fc = nn.Linear(8 * 8 * 8, dim)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        self.dim, self.id = dim, f"tiny-random:{dim}:{seed}"

    def run(self, images: list) -> list[dict]:
        x = torch.from_numpy(np.stack([np.asarray(im.convert("RGB").resize((32, 32)), np.float32) / 255.0
                                       for im in images])).permute(0, 3, 1, 2)
        with torch.inference_mode():
            f = self.fc(torch.relu(self.conv(x)).flatten(1))
        return [{"embedding": v} for v in f.numpy()]


class VisionEncoder:
    """Frozen encoder: PIL images -> float32 [n, dim]. Wraps tweetsim.vision.caption's models."""

    def __init__(self, backend: str = "efficientnet_lite0", clip_model: str | None = None, device: str = "cpu",
                 batch_size: int = 16):
        from tweetsim.vision import caption as cap

        self.batch_size = batch_size
        if backend == "tiny-random":
            self.model = TinyRandomEncoder()
        elif backend == "clip":
            try:
                self.model = cap.ClipEmbedder(clip_model, device=device)
            except (OSError, ValueError) as e:
                logger.warning(f"vision: CLIP weights {clip_model!r} not available offline ({type(e).__name__}); "
                    "EfficientNet-Lite0 pooled features STAND IN as the vision encoder")
                self.model = cap.EfficientNetLite0(device=device)
        elif backend == "efficientnet_lite0":
            self.model = cap.EfficientNetLite0(device=device)
        else:
            raise ValueError(f"vision.backend: unknown {backend!r} (efficientnet_lite0 | clip | tiny-random)")
        self.id = self.model.id
        self.dim = int(len(self.encode([_probe_image()])[0]))

    def encode(self, images: list) -> np.ndarray:
        out = []
        for i in range(0, len(images), self.batch_size):
            out += [np.asarray(r["embedding"], np.float32) for r in self.model.run(images[i:i + self.batch_size])]
        return np.stack(out) if out else np.zeros((0, 0), np.float32)


def _probe_image():
    from PIL import Image

    return Image.new("RGB", (64, 64), (127, 127, 127))


def image_features(rows: pd.DataFrame, media_dir: str | Path, encoder: VisionEncoder | None, max_images: int = 4,
                   max_side: int = 512, progress: bool = True,
                   desc: str = "images") -> tuple[np.ndarray, np.ndarray, dict]:
    """(features [n, dim], has_image [n] bool, counts of why rows have no image), rows' order kept.

    A row's feature is the mean over its first `max_images` readable files; unreadable files are
    counted, never fatal. With no manifest (no download stage output) every row is text-only."""
    from tqdm.auto import tqdm

    from tweetsim.vision import images as imgs

    n = len(rows)
    reasons: dict[str, int] = {}
    manifest_path = Path(media_dir) / "manifest.csv"
    if encoder is None or not manifest_path.is_file():
        why = "no vision encoder" if encoder is None else f"no {manifest_path}"
        return np.zeros((n, encoder.dim if encoder else 0), np.float32), np.zeros(n, bool), {why: n}
    tab = rows.reset_index(drop=True)
    if "caption" not in tab:
        tab = tab.assign(caption=None)
    built = {(r.source, r.id): r for r in imgs.build_rows(tab, imgs.read_manifest(media_dir), media_dir)}
    feats = np.zeros((n, encoder.dim), np.float32)
    has = np.zeros(n, bool)
    for i, key in enumerate(tqdm(list(zip(tab["source"], tab["id"])), desc=desc, disable=not progress)):
        r = built[(str(key[0]), int(key[1]))]
        if not r.items:
            reasons["no media"] = reasons.get("no media", 0) + 1
            continue
        if not r.files:
            reasons["media but no image file"] = reasons.get("media but no image file", 0) + 1
            continue
        ims = []
        for it in r.files[:max_images]:
            try:
                ims.append(imgs.read_frames(it.path, frames=1, max_side=max_side)[0])
            except imgs.ImageError:
                pass
        if not ims:
            reasons["unreadable image file"] = reasons.get("unreadable image file", 0) + 1
            continue
        feats[i] = encoder.encode(ims).mean(0)
        has[i] = True
    return feats, has, dict(sorted(reasons.items()))


# ---------------------------------------------------------------------------------------- model

class Projector(nn.Module):
    """Vision feature -> N prefix embeddings in the LM's input space."""

    def __init__(self, in_dim: int, hidden: int, n_prefix: int, kind: str = "mlp"):
        super().__init__()
        self.n_prefix, self.hidden, self.kind = n_prefix, hidden, kind
        self.norm = nn.LayerNorm(in_dim)  # features of different encoders differ wildly in scale
        if kind == "linear":
            self.net = nn.Linear(in_dim, n_prefix * hidden)
        elif kind == "mlp":
            self.net = nn.Sequential(nn.Linear(in_dim, hidden * 2), nn.GELU(), nn.Linear(hidden * 2, n_prefix * hidden))
        else:
            raise ValueError(f"projection.kind: unknown {kind!r} (linear | mlp)")

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.net(self.norm(feats)).view(feats.shape[0], self.n_prefix, self.hidden)


class PrefixLM(nn.Module):
    """The LoRA causal LM with image prefix embeddings in front of the prompt."""

    def __init__(self, lm, projector: Projector):
        super().__init__()
        self.lm, self.projector = lm, projector

    def build(self, input_ids, attention_mask, feats, has_image, labels=None):
        emb = self.lm.get_input_embeddings()(input_ids)
        proj_param = next(self.projector.parameters())  # fp32 projector beside a bf16 / 4-bit LM, maybe another device
        prefix = self.projector(feats.to(proj_param.device, proj_param.dtype)).to(emb.device, emb.dtype)
        has_image, attention_mask = has_image.to(emb.device), attention_mask.to(emb.device)
        # rows without an image: the prefix is masked out of attention (text-only behaviour)
        pmask = has_image.to(attention_mask.dtype)[:, None].expand(-1, prefix.shape[1])
        out = {"inputs_embeds": torch.cat([prefix, emb], 1), "attention_mask": torch.cat([pmask, attention_mask], 1)}
        if labels is not None:
            labels = labels.to(emb.device)
            out["labels"] = torch.cat([torch.full(pmask.shape, llm.IGNORE, dtype=labels.dtype, device=labels.device), labels], 1)
        return out

    @staticmethod
    def collate(batch: list[dict], pad_id: int, left: bool = False) -> dict:
        return collate(batch, pad_id, left)

    def save_projector(self, folder: str | Path, meta: dict) -> None:
        save_projector(folder, self.projector, {**meta, "feat_dim": self.projector.norm.normalized_shape[0],
                                                "n_prefix": self.projector.n_prefix,
                                                "kind": self.projector.kind})

    def forward(self, input_ids, attention_mask, feats, has_image, labels=None):
        b = self.build(input_ids, attention_mask, feats, has_image, labels)
        pos = (b["attention_mask"].long().cumsum(-1) - 1).clamp(min=0)  # masked prefix does not shift positions
        return self.lm(**b, position_ids=pos)


def collate(batch: list[dict], pad_id: int, left: bool = False) -> dict:
    n = max(len(b["input_ids"]) for b in batch)
    ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), n), dtype=torch.long)
    labels = torch.full((len(batch), n), llm.IGNORE, dtype=torch.long)
    for i, b in enumerate(batch):
        k = len(b["input_ids"])
        sl = slice(n - k, n) if left else slice(0, k)  # left padding for generation
        ids[i, sl] = torch.tensor(b["input_ids"])
        mask[i, sl] = 1
        if "labels" in b:
            labels[i, sl] = torch.tensor(b["labels"])
    out = {"input_ids": ids, "attention_mask": mask,
           "feats": torch.from_numpy(np.stack([b["feat"] for b in batch])),
           "has_image": torch.tensor([bool(b["has_image"]) for b in batch])}
    if not left:
        out["labels"] = labels
    return out




def save_projector(folder: str | Path, projector: Projector, meta: dict) -> None:
    """projector.pt + image_prefix.json (feat_dim, n_prefix, kind, vision params, image counts)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(projector.state_dict(), folder / PROJECTOR_FILE)
    (folder / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")


def load_projector(folder: str | Path, hidden: int) -> tuple[Projector, dict] | None:
    """(Projector, meta) saved by `save_projector`, or None when the folder has none (text-only adapter)."""
    folder = Path(folder)
    if not (folder / META_FILE).is_file():
        return None
    meta = json.loads((folder / META_FILE).read_text())
    proj = Projector(int(meta["feat_dim"]), hidden, int(meta["n_prefix"]), meta["kind"])
    proj.load_state_dict(torch.load(folder / PROJECTOR_FILE, map_location="cpu"))
    return proj.eval(), meta


def with_projector(lm, folder: str | Path):
    """(PrefixLM, meta) when `folder` holds a projector beside its adapter, else (lm, None)."""
    loaded = load_projector(folder, lm.get_input_embeddings().weight.shape[1])
    if loaded is None:
        return lm, None
    proj, meta = loaded
    proj.to(lm.get_input_embeddings().weight.device)
    return PrefixLM(lm, proj).eval(), meta


def encoder_for(meta: dict) -> VisionEncoder:
    """The frozen vision encoder a saved projector was trained on (its image_prefix.json: the
    train_llm.image_prefix.vision params it was trained with)."""
    v = from_section(VisionConfig, "image_prefix.json vision", meta["vision"])
    return VisionEncoder(v.backend, v.clip_model, batch_size=int(v.batch_size))


def attach(lm, feat_dim: int, projection: ProjectionConfig, seed: int = 13) -> PrefixLM:
    """A fresh (seeded) projector in front of `lm`; `projection`: params {kind, n_prefix}."""
    torch.manual_seed(seed)
    hidden = lm.get_input_embeddings().weight.shape[1]
    return PrefixLM(lm, Projector(feat_dim, hidden, int(projection.n_prefix), projection.kind))


def no_images_notice(stage: str, regime: str, why, where: str) -> str:
    """The loud notice (the stage logs it) when image conditioning is on but no row had a readable
    image file."""
    bar = "!" * 78
    return (f"{bar}\n{stage} {regime}: NO row had a readable image file, so EVERY row fell back to its\n"
          f"  text alone ({why}).\n  The image path is exercised by {where}; fetch media to use it here.\n{bar}")
