import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"


@pytest.fixture(scope="session")
def sample_table():
    """The embedded sample, loaded once through the real loader."""
    from tweetsim.data.load import load_sources

    table, rejects, total = load_sources(SAMPLE)
    return table


def gen_config(**overrides):
    """A GenConfig from the shipped params.yaml's `generate` section, with the test's changes."""
    import yaml

    from tweetsim.lm.generate import GenConfig

    from dataclasses import replace

    return replace(GenConfig.from_params(yaml.safe_load((ROOT / "params.yaml").read_text())["generate"]), **overrides)


def llm_train_config(**overrides):
    """The writer LM's TrainConfig from the shipped params.yaml's `train_llm` section, with the test's changes."""
    import yaml

    from dataclasses import replace

    from tweetsim.lm.model import TrainConfig

    return replace(TrainConfig.from_params(yaml.safe_load((ROOT / "params.yaml").read_text())["train_llm"]), **overrides)
