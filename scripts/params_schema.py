"""Regenerate tweetsim/config/params_schema.yaml from params.yaml, after adding or retyping a key on purpose.

usage: python scripts/params_schema.py   (tests/test_params.py checks that the two agree)
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without `pip install -e .` too

from tweetsim.config.params import SCHEMA_PATH, write_schema  # noqa: E402

if __name__ == "__main__":
    write_schema(ROOT / "params.yaml")
    print(f"params_schema: {SCHEMA_PATH.relative_to(ROOT)} rewritten from params.yaml")
