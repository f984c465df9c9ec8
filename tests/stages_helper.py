"""Run stage main()s on fixtures in a temp dir, with a params.yaml written there."""

import importlib.util
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = yaml.safe_load((ROOT / "params.yaml").read_text())  # the one set of defaults; read-only here


def stage(name: str):
    spec = importlib.util.spec_from_file_location(f"stage_{name}", ROOT / "stages" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def override(params: dict, overrides: dict) -> dict:
    """Set dotted keys ("train_llm.steps") in a params dict, as `dvc exp run -S` would."""
    for dotted, value in overrides.items():
        node = params
        *head, last = dotted.split(".")
        for k in head:
            node = node[k]
        node[last] = value
    return params


def write_params(tmp: Path, **overrides) -> Path:
    params = override(yaml.safe_load((ROOT / "params.yaml").read_text()), overrides)
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def run_download(tmp: Path, source: Path, **download) -> Path:
    params = write_params(tmp, **{"download.source": str(source), **{f"download.{k}": v for k, v in download.items()}})
    stage("download").main(str(params), str(tmp / "out"))
    return tmp / "out"


def one_regime_deploy(regime: str) -> dict:
    """deploy_likes overrides for a run with `regime` alone: every route takes its settings and its
    ranges' held-out rows from that regime (the default names regimes such a run does not have)."""
    hide = {"account": [], "brand": ["username"], "new_brand": ["username", "company"]}
    return {"deploy_likes.routes": {r: {"settings_from": regime, "hide": h, "hide_like_stats": r == "new_brand",
                                        "lookalike": r == "new_brand", "crossfit_level": "username"}
                                    for r, h in hide.items()},
            "deploy_likes.intervals": {r: [regime] for r in hide}}


def _fake_inference():
    """A fake predictor's inference params (`p`): params.yaml's, as a trained bundle gives them."""
    from dataclasses import replace

    import yaml

    from tweetsim.likes.config import ClassifierConfig, InferenceConfig
    from tweetsim.text.runtime import EncoderConfig

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    return replace(InferenceConfig.of(ClassifierConfig.from_params(params["train_like_classifier"]),
                                      EncoderConfig.from_params(params["encoder"])), eval_batch_size=64)


FAKE_INFERENCE = _fake_inference()
