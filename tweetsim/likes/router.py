"""The router: each input row is answered by the likes model fitted for what that row knows.

Users never run a regime: a row either comes from an account with labelled history (`account`), from
a new account whose likes level is known otherwise (`brand`: its brand has labelled history, or the
organisers' like statistics of the account are known), or from a brand with none of that (`new_brand`).
Each route has its own fit on every labelled row (likes/deploy.py:fit_route), with the features built
as that situation sees them (deploy_likes.routes): `brand` blanks the account's history on every
training row, `new_brand` the brand's history and the like statistics too (the unseen_brand
regime's recipe), so the trees learn from rows that look like the ones they will answer. A row's
route depends on the labelled rows the models were fitted on and on the row alone, never on the
other rows of the file.

Files: `router.json` in the deploy folder ({"routes": {route: subfolder}, ...}) and one route folder
each (artefacts.route_paths). The backtest (likes/backtest.py) runs the same object on each regime's
held-out rows, so the served path is what evaluate scores.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from tweetsim.likes import features as F
from tweetsim.likes.config import InferenceConfig

ROUTES = ("account", "brand", "new_brand")
INDEX = "router.json"


def _labelled_counts(rows: pd.DataFrame, tables: dict, level: str) -> tuple[np.ndarray, np.ndarray]:
    keys = rows[level].fillna("").astype(str) if level in rows else pd.Series("", index=rows.index)
    n = keys.map(tables[level]["n"]).fillna(0.0).to_numpy(float, copy=True)
    n[(keys == "").to_numpy()] = 0.0  # an empty account or brand is no history
    return keys.to_numpy(), n


def has_like_stats(rows: pd.DataFrame, side_stats: pd.DataFrame | None) -> np.ndarray:
    """Whether the organisers' like statistics of each row's account are known: in the row, or in
    the statistics table by username (features.fill_side_stats reads the same)."""
    known = np.zeros(len(rows), bool)
    for c in F.LIKE_STATS:
        if c in rows:
            known |= pd.to_numeric(rows[c], errors="coerce").notna().to_numpy()
        if side_stats is not None and c in side_stats and "username" in rows:
            known |= rows["username"].map(side_stats[c]).notna().to_numpy()
    return known


def route_rows(rows: pd.DataFrame, tables: dict, side_stats: pd.DataFrame | None = None,
               stats_route: bool = True) -> tuple[np.ndarray, list[str]]:
    """(route of each row, why): `tables` are the history tables (features.history_table by level) of the
    labelled rows the route models were fitted on, `side_stats` the organisers' statistics by username;
    each row is looked up alone. `stats_route`: a new account with like statistics but an unknown brand
    goes to `brand` (its likes level is known), else to `new_brand`."""
    users, nu = _labelled_counts(rows, tables, "username")
    brands, nb = _labelled_counts(rows, tables, "company")
    stats = has_like_stats(rows, side_stats) if stats_route else np.zeros(len(rows), bool)
    route = np.where(nu > 0, "account", np.where((nb > 0) | stats, "brand", "new_brand")).astype(object)
    reasons = []
    for r, u, c, a, b, st in zip(route, users, brands, nu, nb, stats):
        if r == "account":
            reasons.append(f"account @{u} has {int(a)} labelled tweets")
        elif r == "brand" and b > 0:
            reasons.append(f"brand {c} has {int(b)} labelled tweets, account @{u or '?'} none")
        elif r == "brand":
            reasons.append(f"account @{u} has no labelled tweets but the organisers' like statistics, brand {c or '(none given)'} none")
        else:
            reasons.append(f"brand {c or '(none given)'} has no labelled tweets" + (f", account @{u} no like statistics" if u else ""))
    return route, reasons


class Blend:
    """The brand route's answer: its own model's log1p likes blended with the account route's model's
    (`weight`: the brand model's share, deploy_likes.brand_blend). Neither recipe wins both kinds of
    new account (later ones, and ones of the same period); the weight is chosen on the backtest's val
    rows. The ranges are the brand route's, calibrated on the blended predictions of its held-out rows;
    the explanations are the two models' factors, blended with the same weight."""

    def __init__(self, own, other, weight: float):
        self.own, self.other, self.weight = own, other, float(weight)
        self.last, self.last_features, self.ranges, self.timings = {}, pd.DataFrame(), None, {}

    def __getattr__(self, name):  # state, bundle, intervals...: the brand route's own
        if name == "own":
            raise AttributeError(name)
        return getattr(self.own, name)

    @property
    def p(self) -> InferenceConfig:
        return self.own.p

    @p.setter
    def p(self, value: InferenceConfig) -> None:
        """Both models' inference params (they are the same in every route: combine_likes' bundle)."""
        self.own.p = self.other.p = value

    def _mix(self, likes: np.ndarray, other: np.ndarray) -> np.ndarray:
        z = self.weight * np.log1p(np.clip(likes, 0, None)) + (1 - self.weight) * np.log1p(np.clip(other, 0, None))
        return np.expm1(z)

    def _call(self, call):
        """call(predictor) on the account model, then on the brand model, whose last state is kept."""
        other = call(self.other)
        t_other = dict(self.other.timings)
        own = call(self.own)
        self.last, self.last_features = self.own.last, self.own.last_features
        self.timings = {k: v + t_other.get(k, 0.0) for k, v in self.own.timings.items()}
        return own, other

    def _ranges(self, likes: np.ndarray) -> None:
        if self.own.intervals is not None:
            self.ranges = self.own.intervals.apply(likes, self.last["probs"], self.last["z"])

    def predict_with_probs(self, rows: pd.DataFrame, context: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray]:
        (likes, probs), (other, _) = self._call(lambda pred: pred.predict_with_probs(rows, context=context))
        likes = self._mix(likes, other)
        self._ranges(likes)
        return likes, probs

    def explain(self, rows: pd.DataFrame, context: pd.DataFrame | None = None) -> tuple[np.ndarray, pd.DataFrame]:
        (likes, factors), (other, other_factors) = self._call(lambda pred: pred.explain(rows, context))
        likes = self._mix(likes, other)
        self._ranges(likes)
        return likes, self.weight * factors + (1 - self.weight) * other_factors


def write_index(folder: Path, routes: list[str], meta: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / INDEX).write_text(json.dumps({**meta, "routes": {r: r for r in routes}}, indent=2, sort_keys=True) + "\n")


class Router:
    """The route models of a deploy folder behind the Predictor's interface: predict, predict_with_probs,
    predict_with_range, explain; `ranges`, `last`, `last_features` and `timings` are the last call's, in
    the rows' order; `last_routes` says which route answered each row and why."""

    def __init__(self, folder: str | Path, num_threads: int = 2):
        from tweetsim.likes.predictor import Predictor

        folder = Path(folder)
        index = folder / INDEX
        if not index.exists():
            raise FileNotFoundError(f"{index} is missing: run `dvc repro deploy_likes` first "
                                    "(or pass --models-of REGIME for a regime's models)")
        self.bundle = json.loads(index.read_text())
        self.routes = {r: Predictor(num_threads=num_threads, folder=folder / sub) for r, sub in self.bundle["routes"].items()}
        first = next(iter(self.routes.values()))
        self.state = first.state  # edges, max_length and the known tweets are the same in every route
        self.tables = first.state.tables
        self.stats_route = bool(self.bundle["stats_route"])
        self.brand_blend = float(self.bundle["brand_blend"])
        if "brand" in self.routes and self.brand_blend < 1:
            self.routes["brand"] = Blend(self.routes["brand"], self.routes["account"], self.brand_blend)
        self.p = first.p
        context = first.state.context
        for pred in self.routes.values():  # one copy of the known tweets' context rows
            pred.state.context = context
        self.ranges: tuple[np.ndarray, np.ndarray] | None = None
        self.last: dict[str, np.ndarray] = {}
        self.last_routes: tuple[np.ndarray, list[str]] = (np.array([], object), [])
        self.timings: dict[str, float] = {}

    @property
    def p(self) -> InferenceConfig:
        """The bundle's inference params (the same in every route: combine_likes' bundle)."""
        return self._p

    @p.setter
    def p(self, value: InferenceConfig) -> None:
        self._p = value
        for pred in self.routes.values():
            pred.p = value

    @property
    def intervals(self):
        """Truthy when every route has its ranges."""
        return all(p.intervals is not None for p in self.routes.values()) or None

    @property
    def context(self) -> pd.DataFrame:
        return self.state.context

    @context.setter
    def context(self, rows: pd.DataFrame) -> None:
        for pred in self.routes.values():
            pred.state.context = rows

    def set_history(self, tables: dict) -> None:
        """Account and brand history (and so the routes) from other labelled rows' history tables
        (features.history_table by level) than the fitted ones: the backtest predicts a regime's test
        rows with every like known before them."""
        self.tables = tables
        for pred in self.routes.values():
            pred.state.tables = self.tables

    def route(self, rows: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
        routes, reasons = route_rows(rows, self.tables, self.state.side_stats, self.stats_route)
        missing = sorted(set(routes) - set(self.routes))
        if missing:
            raise ValueError(f"router: rows need the route(s) {missing}, which these models do not have "
                             f"({sorted(self.routes)})")
        return routes, reasons

    def pick(self, row: pd.DataFrame):
        """(route, reason, its Predictor) of a one-row frame (best-time: one post at many dates)."""
        routes, reasons = self.route(row.iloc[:1])
        return routes[0], reasons[0], self.routes[routes[0]]

    def _each(self, rows: pd.DataFrame, context: pd.DataFrame | None, call) -> list:
        """call(predictor, part rows, part context) per route, with the row positions of each part."""
        rows = rows.reset_index(drop=True)
        routes, reasons = self.route(rows)
        self.last_routes = (routes, reasons)
        out = []
        for r in ROUTES:
            idx = np.flatnonzero(routes == r)
            if len(idx):
                ctx = None if context is None else context.reset_index(drop=True).iloc[idx]
                pred = self.routes[r]
                result = call(pred, rows.iloc[idx], ctx)
                # this call's state, before a later route's call (the brand route's blend calls the
                # account model too) overwrites it
                out.append((idx, {"last": pred.last, "last_features": pred.last_features, "ranges": pred.ranges,
                                  "timings": pred.timings}, result))
        return out

    def _gather(self, parts: list) -> None:
        """The per-route state of the last call (ranges, probabilities, features, timings) in row order."""
        order = np.argsort(np.concatenate([idx for idx, _, _ in parts])) if parts else np.zeros(0, int)
        stack = lambda arrays: np.concatenate(arrays)[order] if arrays else np.zeros(0)  # noqa: E731
        self.last = {k: stack([p["last"][k] for _, p, _ in parts]) for k in ("probs", "z")} if parts else {}
        self.last_features = (pd.concat([p["last_features"] for _, p, _ in parts], ignore_index=True).iloc[order]
                              .reset_index(drop=True)) if parts else pd.DataFrame()
        if self.intervals and parts:
            self.ranges = (stack([p["ranges"][0] for _, p, _ in parts]), stack([p["ranges"][1] for _, p, _ in parts]))
        timings = [p["timings"] for _, p, _ in parts]
        self.timings = {k: sum(t.get(k, 0.0) for t in timings) for k in (timings[0] if timings else {})}

    def predict_with_probs(self, rows: pd.DataFrame, context: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray]:
        parts = self._each(rows, context, lambda pred, part, ctx: pred.predict_with_probs(part, context=ctx))
        likes = np.zeros(len(rows))
        probs = np.zeros((len(rows), len(self.state.edges)))
        for idx, _, (lk, pb) in parts:
            likes[idx], probs[idx] = lk, pb
        self._gather(parts)
        return likes, probs

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        return self.predict_with_probs(rows)[0]

    def predict_with_range(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.intervals:
            raise FileNotFoundError("a route has no intervals file: rerun `dvc repro deploy_likes`")
        likes = self.predict_with_probs(rows)[0]
        return (likes, *self.ranges)

    def explain(self, rows: pd.DataFrame, context: pd.DataFrame | None = None) -> tuple[np.ndarray, pd.DataFrame]:
        """(likes, factors) as likes/explain.py's explain, each row by its route's models."""
        parts = self._each(rows, context, lambda pred, part, ctx: pred.explain(part, ctx))
        likes = np.zeros(len(rows))
        frames = []
        for idx, _, (lk, factors) in parts:
            likes[idx] = lk
            frames.append(factors.set_axis(idx))
        self._gather(parts)
        return likes, pd.concat(frames).sort_index() if frames else pd.DataFrame()


def load_likes_model(models_dir: str | Path, num_threads: int = 2, models_of: str | None = None):
    """What the CLI and the app serve: the router over the deploy fit's routes, or with `models_of`
    the one regime's models (predictor.Predictor), whose `route` is that regime for every row."""
    from tweetsim.likes.artefacts import Layout
    from tweetsim.likes.predictor import Predictor

    if models_of is not None:
        return Predictor(models_dir, num_threads, models_of)
    return Router(Layout(Path(models_dir)).deploy, num_threads)


def routes_of_last(model, n: int) -> tuple[list[str], list[str]]:
    """(route, why) of each row of `model`'s last call: the router's, or the pinned regime's."""
    if isinstance(model, Router):
        routes, reasons = model.last_routes
        return [str(r) for r in routes], list(reasons)
    regime = model.bundle["regime"]
    return [f"regime:{regime}"] * n, [f"--models-of {regime}: every row answered by that regime's models"] * n
