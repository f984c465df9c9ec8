"""Saving Hugging Face artefacts so that the same run writes the same bytes.

Both helpers save as usual, then rewrite the one JSON file that would otherwise change between
identical runs:
- transformers records the run's hub mode (`local_files_only`, true under HF_HUB_OFFLINE=1) in a
  saved tokenizer_config.json, so a stage run online and offline wrote different files; the key
  only steered how *that* process loaded files, and is dropped;
- peft keeps a LoRA's target_modules as a set, whose order changes with each process's hash seed;
  adapter_config.json gets them sorted.
"""

import json
from pathlib import Path

RUNTIME_KEYS = ("local_files_only",)


def _rewrite(path: Path, fix) -> None:
    """Apply `fix` (dict -> bool: changed) to the JSON file at `path`, rewriting it only if changed."""
    if path.is_file():
        c = json.loads(path.read_text())
        if fix(c):
            path.write_text(json.dumps(c, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def _drop_runtime_keys(c: dict) -> bool:
    hit = [k for k in RUNTIME_KEYS if k in c]
    for k in hit:
        del c[k]
    return bool(hit)


def _sort_targets(c: dict) -> bool:
    if not isinstance(c.get("target_modules"), list):
        return False
    c["target_modules"] = sorted(c["target_modules"])
    return True


def save_tokenizer(tok, folder: str | Path) -> None:
    tok.save_pretrained(folder)
    _rewrite(Path(folder) / "tokenizer_config.json", _drop_runtime_keys)


def save_adapter(model, folder: str | Path) -> None:
    """peft's save_pretrained; every adapter_config.json below `folder` gets sorted target_modules."""
    model.save_pretrained(folder)
    for cfg in Path(folder).rglob("adapter_config.json"):
        _rewrite(cfg, _sort_targets)
