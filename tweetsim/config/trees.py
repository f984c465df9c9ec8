"""The settings every gradient-boosted tree model of the project reads (xgboost's sklearn API):
`TreeConfig`, the base of the configs that fit one (likes.config.XgbConfig, writer.config.RerankerConfig)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class TreeConfig:
    """A boosted tree model's shape, sampling, early stopping, seed and threads (params keys of the same names)."""

    n_estimators: int
    learning_rate: float
    max_depth: int
    min_child_weight: float
    subsample: float
    colsample_bytree: float
    early_stopping_rounds: int
    seed: int
    num_threads: int

    def xgb_params(self) -> dict:
        """xgboost sklearn model arguments for these settings; early stopping is left to the caller, which
        knows whether it has validation rows."""
        return {"n_estimators": int(self.n_estimators), "learning_rate": float(self.learning_rate),
                "max_depth": int(self.max_depth), "min_child_weight": float(self.min_child_weight),
                "subsample": float(self.subsample), "colsample_bytree": float(self.colsample_bytree),
                "tree_method": "hist", "random_state": int(self.seed), "n_jobs": int(self.num_threads)}
