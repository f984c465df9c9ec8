"""The behaviour models' files under `models/`, each format saved and loaded here, and the layout of
that folder in one place (the stages, the deploy fit and the Predictor take their paths from Layout).

- `like_classifier/<regime>/`: the fine-tuned classifier (HF folder), `state.json` (bucket edges,
  max_length, feature names), `pca.npz`, `history_{username,company}.parquet` (the rows of the regime
  that a test row's history comes from: `test_history`), `history_all_{username,company}.parquet`
  (every row with likes: what the CLI uses as an account's history), `side_stats.parquet` (organiser
  statistics by username), `context_rows.parquet` (every known tweet's account, brand, date and video
  views: features.context_features pools the input rows with them), `training.json` (the kept step).
- `like_regressor/<lower edge>/<regime>.{ubj,json}`: the bucket's XGBoost and its metadata.
- `likes/bundle.json`: the final mode and smearing of the regimes' models (`--models-of REGIME`);
  `likes/gate/<regime>.*`, `likes/intervals/<regime>.json` (conformal ranges, likes/intervals.py).
- `likes/deploy/`: the deploy fit (likes/deploy.py) that the CLI and the web app load by default:
  `router.json` (likes/router.py) and one folder per route, `<route>/`: `classifier/` (as
  like_classifier/<regime>/), `regressor/<edge>.*`, `gate.*`, `intervals.json`, `bundle.json` (with
  the paths of those, relative to the route's folder).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tweetsim.likes import features as F

# the id and label columns of data/likes/features.parquet; every other column is a tree feature
META = ["regime", "source", "id", "side", "likes", "bucket"]


def tree_features(columns, xgb) -> list[str]:
    """The trees' feature columns of a feature table: every column but META, `xgb.drop_features` and the
    clock columns `xgb.time_features` leaves out (features.time_columns)."""
    drop = {*META, *xgb.drop_features, *F.time_columns(xgb.time_features)}
    return [c for c in columns if c not in drop]


@dataclass(frozen=True)
class Layout:
    """Where each behaviour artefact lives under the models folder."""

    models: Path

    @property
    def classifiers(self) -> Path:
        return self.models / "like_classifier"

    def classifier(self, regime: str) -> Path:
        return self.classifiers / regime

    def regressor(self, edge, regime: str) -> Path:
        return self.models / "like_regressor" / str(edge) / regime

    def gate(self, regime: str) -> Path:
        return self.models / "likes" / "gate" / regime

    def intervals(self, regime: str) -> Path:
        return self.models / "likes" / "intervals" / f"{regime}.json"

    @property
    def bundle(self) -> Path:
        return self.models / "likes" / "bundle.json"

    @property
    def deploy(self) -> Path:
        return self.models / "likes" / "deploy"


def write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_bundle(path: Path, stage: str) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `dvc repro {stage}` first")
    return json.loads(path.read_text())


def read_training(folder: Path) -> dict:
    """The classifier's training.json: {best_step, steps_run}."""
    path = folder / "training.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: rerun train_like_classifier (it records the best step)")
    return json.loads(path.read_text())


def write_training(folder: Path, best_step: int, steps_run: int) -> None:
    (folder / "training.json").write_text(json.dumps({"best_step": best_step, "steps_run": steps_run}, indent=2) + "\n")


class FeatureState:
    """Everything needed to featurise rows of one regime outside training."""

    def __init__(self, edges, max_length, pca, tables, side_stats, context, feature_names=None):
        self.edges, self.max_length, self.pca = list(edges), int(max_length), pca
        self.tables, self.side_stats, self.context, self.feature_names = tables, side_stats, context, feature_names

    def save(self, folder: Path, tables_all: dict | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.pca.save(folder / "pca.npz")
        for level, tab in self.tables.items():
            tab.to_parquet(folder / f"history_{level}.parquet")
        for level, tab in (tables_all or {}).items():
            tab.to_parquet(folder / f"history_all_{level}.parquet")
        self.side_stats.to_parquet(folder / "side_stats.parquet")
        self.context.to_parquet(folder / "context_rows.parquet", index=False)
        (folder / "state.json").write_text(json.dumps({"edges": self.edges, "max_length": self.max_length,
                                                        "features": self.feature_names}, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path, history: str = "all") -> "FeatureState":
        st = json.loads((folder / "state.json").read_text())
        prefix = "history_all_" if history == "all" else "history_"
        tables = {lv: pd.read_parquet(folder / f"{prefix}{lv}.parquet") for lv in F.LEVELS}
        return cls(st["edges"], st["max_length"], F.TextPCA.load(folder / "pca.npz"), tables,
                   pd.read_parquet(folder / "side_stats.parquet"), pd.read_parquet(folder / "context_rows.parquet"), st["features"])


def route_paths(folder: Path) -> tuple[dict, dict]:
    """(bundle, paths) of one fitted route (a folder written by likes/deploy.py:fit_route): its
    bundle.json's paths are relative to the folder."""
    path = folder / "bundle.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `dvc repro deploy_likes` first "
                                "(or pass --models-of REGIME for a regime's models)")
    bundle = json.loads(path.read_text())
    paths = {k: (folder / v if isinstance(v, str) else [folder / x for x in v]) if v else None
             for k, v in bundle["paths"].items()}
    return bundle, paths


def model_paths(models: Path, models_of: str) -> tuple[dict, dict]:
    """(bundle, paths: classifier folder, regressor stems, gate stem or None, intervals file or None) of
    regime `models_of`'s models."""
    layout = Layout(models)
    bundle = {**read_bundle(layout.bundle, "combine_likes"), "regime": models_of}
    if not (layout.classifier(models_of) / "state.json").exists():
        raise FileNotFoundError(f"{layout.classifier(models_of)} is missing: --models-of {models_of} "
                                "is not a trained regime (split.regimes)")
    intervals = layout.intervals(models_of)
    return bundle, {"classifier": layout.classifier(models_of),
                    "regressors": [layout.regressor(e, models_of) for e in bundle["edges"]],
                    "gate": layout.gate(models_of) if bundle.get("gate") == "tabular" else None,
                    "intervals": intervals if intervals.exists() else None}

