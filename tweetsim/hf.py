"""Saving Hugging Face tokenizers so that the same run writes the same bytes.

transformers records the run's hub mode (`local_files_only`, true under HF_HUB_OFFLINE=1) in the
saved tokenizer_config.json, so a stage run online and offline wrote different files and DVC saw
a changed output. The key only steers how *that* process loaded files; it is dropped on save.
"""

import json
from pathlib import Path

RUNTIME_KEYS = ("local_files_only",)


def save_tokenizer(tok, folder: str | Path) -> None:
    tok.save_pretrained(folder)
    cfg = Path(folder) / "tokenizer_config.json"
    if cfg.is_file():
        c = json.loads(cfg.read_text())
        if any(k in c for k in RUNTIME_KEYS):
            for k in RUNTIME_KEYS:
                c.pop(k, None)
            cfg.write_text(json.dumps(c, indent=2, ensure_ascii=False) + "\n")
