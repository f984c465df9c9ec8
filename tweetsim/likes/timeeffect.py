"""The backtest of the time effect: on held-out rows, how much more (or less) an account's tweets get at
one time of day or day of the week than at its others, observed and as the model predicts it.

Each row's log1p likes minus its account's mean log1p likes over its held-out rows (accounts with one
such row say nothing about time and are left out) is the observed residual; the model's residual is the
same from its predicted likes. A time group's effect (a four-hour bucket of the UTC hour, a weekday, a
single hour) is the mean residual of its rows: in log1p likes, so exp(a - b) is the ratio of likes between
groups a and b for the same accounts. The observed effect gets a 95% interval from resampling accounts
(with replacement, whole accounts: their rows are not independent); the model's effect is inside when it
falls in that interval. Steps are the changes between neighbouring groups (23 h next to 0 h, Sunday next
to Monday), each with the interval of the observed step: a step of the model outside it is a change the
held-out rows do not support.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
BUCKET_HOURS = 4  # hours per bucket of the hour effect: 6 buckets (single hours are too few rows on the sample)


def _groups(date: pd.Series) -> dict[str, tuple[np.ndarray, list[str]]]:
    """{grouping: (each row's group, the group labels in order)} for the UTC `date`."""
    d = pd.to_datetime(date, utc=True)
    hour, day = d.dt.hour.to_numpy(), d.dt.day_of_week.to_numpy()
    buckets = [f"{h:02d}-{h + BUCKET_HOURS:02d}h" for h in range(0, 24, BUCKET_HOURS)]
    return {"hour_bucket": (hour // BUCKET_HOURS, buckets), "weekday": (day, list(WEEKDAYS)),
            "hour": (hour, [f"{h:02d}h" for h in range(24)])}


def _sums(acct: np.ndarray, group: np.ndarray, value: np.ndarray, n_acct: int, n_group: int) -> tuple[np.ndarray, np.ndarray]:
    """Per account and group: the sum of `value` and the row count ((n_acct, n_group) each)."""
    s, n = np.zeros((n_acct, n_group)), np.zeros((n_acct, n_group))
    np.add.at(s, (acct, group), value)
    np.add.at(n, (acct, group), 1.0)
    return s, n


def _steps(effects: np.ndarray) -> np.ndarray:
    """Changes from each group to the next, the last to the first (the clock and the week wrap)."""
    return np.roll(effects, -1, axis=-1) - effects


def _interval(boot: np.ndarray, q: list[float]) -> np.ndarray:
    """(low, high) per column of the resampled `boot` over its finite draws; NaN where it has none."""
    out = np.full((2, boot.shape[1]), np.nan)
    seen = np.isfinite(boot).any(0)
    if seen.any():
        out[:, seen] = np.nanquantile(boot[:, seen], q, axis=0)
    return out


def time_effect(rows: pd.DataFrame, resamples: int = 1000, seed: int = 13, level: float = 0.95) -> dict:
    """The backtest of `rows` (date, username, likes, pred_likes; held-out rows): per grouping
    (hour_bucket, weekday, hour) and group: n rows, the observed effect, its interval, the model's effect and
    whether inside; `steps` per neighbouring pair ("a>b"): the model's step, the observed step's interval and
    whether inside; `inside` the share of groups inside; `largest_step`: the model's largest change between
    neighbouring groups, the observed step's interval there and whether inside; `steps_inside` the share of
    all steps inside. Groups without rows are left out (effects NaN, steps across them too)."""
    acct_key = rows["username"].fillna("").astype(str).to_numpy()
    keep = acct_key != ""
    counts = pd.Series(acct_key[keep]).value_counts()
    keep &= np.isin(acct_key, counts.index[counts >= 2])
    rows = rows[keep]
    acct = pd.factorize(acct_key[keep])[0]
    n_acct = int(acct.max()) + 1 if len(acct) else 0
    resid = {}
    for name, col in (("observed", "likes"), ("model", "pred_likes")):
        y = np.log1p(np.clip(rows[col].to_numpy(float), 0, None))
        resid[name] = y - (np.bincount(acct, y, n_acct) / np.bincount(acct, minlength=n_acct))[acct]
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n_acct, np.full(n_acct, 1.0 / n_acct), size=resamples).astype(float) if n_acct else np.zeros((resamples, 0))
    q = [(1 - level) / 2, (1 + level) / 2]
    out = {"n_rows": int(len(rows)), "n_accounts": n_acct, "resamples": int(resamples), "level": level,
           "unit": "log1p likes around the account's mean (exp of a difference: the ratio of likes)"}
    for grouping, (group, labels) in _groups(rows["date"]).items():
        k = len(labels)
        s_obs, n = _sums(acct, group, resid["observed"], n_acct, k)
        s_mod, _ = _sums(acct, group, resid["model"], n_acct, k)
        with np.errstate(invalid="ignore", divide="ignore"):
            obs, model = s_obs.sum(0) / n.sum(0), s_mod.sum(0) / n.sum(0)
            boot = (draws @ s_obs) / (draws @ n)  # (resamples, k); a group a draw misses: NaN
        lo, hi = _interval(boot, q)
        slo, shi = _interval(_steps(boot), q)
        inside = (model >= lo) & (model <= hi)
        step = _steps(model)
        step_in = (step >= slo) & (step <= shi)
        known = np.isfinite(obs)
        known_step = np.isfinite(step) & np.isfinite(slo)
        j = int(np.nanargmax(np.where(known_step, np.abs(step), np.nan))) if known_step.any() else None
        out[grouping] = {
            "groups": {lab: {"n": int(n[:, g].sum()), "observed": float(obs[g]), "low": float(lo[g]), "high": float(hi[g]),
                             "model": float(model[g]), "inside": bool(inside[g])} for g, lab in enumerate(labels) if known[g]},
            "steps": {f"{lab}>{labels[(g + 1) % k]}": {"model": float(step[g]), "low": float(slo[g]), "high": float(shi[g]),
                                                       "inside": bool(step_in[g])} for g, lab in enumerate(labels) if known_step[g]},
            "inside": float(inside[known].mean()) if known.any() else None,
            "steps_inside": float(step_in[known_step].mean()) if known_step.any() else None,
            "largest_step": None if j is None else {
                "from": labels[j], "to": labels[(j + 1) % k], "model": float(step[j]), "low": float(slo[j]),
                "high": float(shi[j]), "inside": bool(step_in[j])}}
    return out


def served_time_effect(served: list[pd.DataFrame], table: pd.DataFrame) -> dict:
    """time_effect of each regime's served test rows (evaluate's frames: source, id, likes, pred_likes,
    regime), their date and account from `table`."""
    out = {}
    for m in served:
        rows = m.merge(table[["source", "id", "date", "username"]], on=["source", "id"], how="left")
        out[str(rows["regime"].iloc[0])] = time_effect(rows)
    return out


def unsupported_steps(curve: pd.DataFrame, effect: dict) -> pd.DataFrame:
    """The hour-to-hour changes of a best-time `curve` (besttime.best_time) larger than the backtest supports:
    each slot's change in log1p likes from the slot before, against the observed change between those two
    clock hours (`effect`: time_effect's "hour" block), larger in size than either end of its interval
    (`bound`); a pair the held-out rows lack is not judged."""
    y = curve["log1p_likes"].to_numpy(float)
    hours = curve["hour"].to_numpy(int)
    pairs = [f"{a:02d}h>{b:02d}h" for a, b in zip(hours[:-1], hours[1:])]
    steps = effect["steps"]
    bound = [max(abs(steps[p]["low"]), abs(steps[p]["high"])) if p in steps else np.inf for p in pairs]
    out = pd.DataFrame({"slot": curve["slot"].to_numpy()[1:], "pair": pairs, "step": np.diff(y), "bound": bound})
    return out[out["step"].abs() > out["bound"]].reset_index(drop=True)
