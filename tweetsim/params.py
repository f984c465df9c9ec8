"""params.yaml access: stages read their section straight from the file (no DVC needed)."""

from pathlib import Path

import yaml


def load_params(path: str | Path = "params.yaml") -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def section(name: str, path: str | Path = "params.yaml") -> dict:
    params = load_params(path)
    if name not in params:
        raise KeyError(f"{path}: no '{name}' section")
    return params[name]
