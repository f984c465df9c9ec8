"""Reasons (tweetsim.likes.explain) and the best time to post (tweetsim.likes.besttime) on the tiny trained
likes models of tests/test_likes.py (the same fixture, trained again for this module)."""

import json

import numpy as np
import pandas as pd
import pytest

from test_likes import TINY, _run_pipeline, fixture_data, trained  # noqa: F401 (fixtures)
from tweetsim.likes import besttime as B
from tweetsim.likes import explain as E
from tweetsim.likes import features as F
from tweetsim.likes.regressor import combine

# every test reads the likes chain trained for this module (test_likes' `trained`): minutes
pytestmark = pytest.mark.slow


def test_every_feature_column_has_a_factor(trained):
    from tweetsim.likes.predictor import Predictor

    rows = pd.DataFrame({"source": "s", "id": [1], "username": ["a"], "company": ["x"], "date": pd.to_datetime(["2021-01-01"], utc=True), "likes": [3]})
    tabs = {lv: F.history_table(rows, lv) for lv in F.LEVELS}
    cols = [*F.base_features(rows).columns, *F.history_features(rows, tables=tabs).columns,
            *F.context_features(rows).columns, "emb_pc0", "emb_pc11", "p_bucket0", "p_bucket4"]
    _, models = trained
    cols += Predictor(folder=models / "likes" / "deploy" / "account").state.feature_names  # what the trained models use
    assert {E.factor_of(c) for c in cols} == set(E.FACTORS)
    assert E.factor_of("acct_hist_days_since") == "time" and E.factor_of("log_followers") == "audience"
    with pytest.raises(KeyError, match="'new_feature' has no factor"):
        E.factor_of("new_feature")


@pytest.fixture(scope="module")
def predictor(trained):
    from tweetsim.likes.predictor import Predictor

    _, models = trained
    return Predictor(folder=models / "likes" / "deploy" / "account")


@pytest.fixture(scope="module")
def rows(fixture_data):
    tmp, _ = fixture_data
    return pd.read_parquet(tmp / "data" / "tweets.parquet").head(24)


@pytest.mark.parametrize("mode", ["argmax", "mixture"])
@pytest.mark.parametrize("smear", [True, False])
@pytest.mark.parametrize("gate", ["tabular", "classifier"])
def test_contributions_add_up_to_the_prediction(predictor, rows, mode, smear, gate):
    predictor.predict(rows)
    X = predictor.last_features
    g = predictor.gate if gate == "tabular" else None
    assert predictor.gate is not None  # the fixture's default gate; `classifier` mixes the classifier's probabilities
    probs = g.predict(X) if g is not None else X[[f"p_bucket{k}" for k in range(len(predictor.regs))]].to_numpy()
    z = np.stack([r.predict_log(X) for r in predictor.regs], 1)
    s = np.array([r.meta["smearing"] for r in predictor.regs])
    want = np.log1p(combine(probs, z, s, mode, smear))
    c = E.contributions(X, predictor.regs, g, mode, smear)
    assert np.allclose(c.sum(axis=1), want, atol=1e-4, rtol=0)
    f = E.by_factor(c)
    assert list(f.columns) == [*E.FACTORS, E.BIAS] and np.allclose(f.sum(axis=1), want, atol=1e-4, rtol=0)
    if mode == "mixture" and g is not None:
        # the gate's choice of bucket is explained, not left in the bias: the bias is its base value
        # (the same for every row) up to the clipping terms and the quadrature remainder
        assert np.abs(c[E.BIAS] - c[E.BIAS].median()).max() < 1e-3 or (want == 0).any()
        assert np.allclose(E.contributions(X, predictor.regs, g, mode, smear, nodes=64).to_numpy(), c.to_numpy(), atol=1e-3)


def test_explain_matches_the_served_prediction(predictor, rows):
    likes, f = E.explain(predictor, rows)
    assert np.allclose(f.sum(axis=1), np.log1p(likes), atol=1e-4, rtol=0)
    assert np.array_equal(likes, predictor.predict(rows))
    row = f.iloc[0].to_dict()
    top = E.top_reasons(row)
    assert len(top) == 3 and [abs(t["value"]) for t in top] == sorted((abs(v) for k, v in row.items() if k != E.BIAS), reverse=True)[:3]
    assert all(t["words"] == f"{'+' if t['value'] > 0 else '−'} {E.FACTORS[t['factor']]}" for t in top)
    js = json.loads(E.to_json(f)[0])
    assert set(js) == {*E.FACTORS, E.BIAS} and js[E.BIAS] == round(row[E.BIAS], 4)


def test_predict_likes_explain_column(trained, rows, tmp_path, capsys):
    from tweetsim.apps.cli import main

    _, models = trained
    path = tmp_path / "in.csv"
    rows.head(6).to_csv(path, index=False)
    out = tmp_path / "likes.csv"
    assert main(["predict-likes", "--input", str(path), "--output", str(out), "--models", str(models), "--explain"]) == 0
    got = pd.read_csv(out)
    assert list(got.columns) == ["id", "likes", "likes_low", "likes_high", "route", "route_reason", "explain", "status", "reason"]
    for likes, js in zip(got["likes"], got["explain"]):
        total = sum(json.loads(js).values())
        assert abs(np.expm1(total) - likes) <= 0.5 + 1e-3 * likes  # the likes column is rounded to a whole like
    assert main(["predict-likes", "--input", str(path), "--output", str(out), "--models", str(models), "--explain",
                 "--two-columns"]) == 2
    assert "--two-columns writes id,likes only" in capsys.readouterr().err


def test_best_time_slots(predictor, rows):
    known = rows["username"].isin(predictor.state.tables["username"].index)  # an account with a history
    row = rows[known & rows["date"].notna()].head(1)
    curve, best = B.best_time(predictor, row, top=5)
    X = predictor.last_features
    assert len(curve) == B.SLOTS == 168 and curve["slot"].tolist() == list(range(168))
    d = curve["date"]
    assert d.iloc[0] == pd.Timestamp(row["date"].iloc[0]).floor("h") + pd.Timedelta(hours=1)
    assert (d.diff().iloc[1:] == pd.Timedelta(hours=1)).all() and (d.dt.minute == 0).all()
    assert len(best) == 5 and best["likes"].is_monotonic_decreasing and best["likes"].iloc[0] == curve["likes"].max()
    # the date-dependent features follow the slot; the context features are the post's, on every slot
    assert X["hour"].tolist() == d.dt.hour.tolist() and X["dayofweek"].tolist() == d.dt.day_of_week.tolist()
    assert np.allclose(np.diff(X["acct_hist_days_since"]), 1 / 24) and np.allclose(np.diff(X["days"]), 1 / 24)
    ctx = F.context_features(row.reset_index(drop=True), predictor.state.context)
    assert (X[ctx.columns].nunique(dropna=False) == 1).all() and np.allclose(X[ctx.columns].iloc[0], ctx.iloc[0], equal_nan=True)
    # a slot predicted on its own (with the post's context) gets the batched value
    for k in (0, 77):
        one = row.assign(date=d.iloc[k])
        alone, _ = predictor.predict_with_probs(one, context=ctx)
        assert abs(np.log1p(alone[0]) - curve["log1p_likes"].iloc[k]) < 1e-2
    start = B.first_slot(start="2024-03-01 09:20")
    assert start == pd.Timestamp("2024-03-01 10:00", tz="UTC")
    assert B.best_time(predictor, row, start=start, top=3)[0]["date"].iloc[0] == start
    # what moves across the slots: the date's features only, shares summing to 1; a band around each slot
    curve, best = B.best_time(predictor, row, top=5)
    shares = B.swing(predictor)
    assert len(shares) and abs(shares.sum() - 1) < 1e-9 and set(shares.index) <= {*B.SLOT_GROUPS.values(), B.CLASSIFIER, B.OTHER}
    if "likes_low" in curve:
        assert (curve["likes_low"] <= curve["likes"] + 1e-6).all() and (curve["likes"] <= curve["likes_high"] + 1e-6).all()
        note = B.distinct(curve, best)
        assert note is None or "inside the median slot's 80% range" in note
    geo = B.chart(curve, best)
    assert len(geo["points"].split()) == 168 and len(geo["dots"]) == 5 and 7 <= len(geo["days"]) <= 8
    assert ("likes_low" in curve) == bool(geo["band"]) and len(geo["band"].split()) in (0, 2 * 168)


def test_best_time_cli(trained, rows, tmp_path, capsys):
    from tweetsim.apps.cli import main

    _, models = trained
    one, many = tmp_path / "one.csv", tmp_path / "many.csv"
    rows.head(1).to_csv(one, index=False)
    rows.head(3).to_csv(many, index=False)
    curve = tmp_path / "curve.csv"
    assert main(["best-time", "--input", str(one), "--top", "3", "--models", str(models), "--output", str(curve),
                 "--start", "2024-03-01 09:00"]) == 0
    out = capsys.readouterr().out
    assert "168 hourly slots from 2024-03-01 09:00 UTC" in out and sum(ln.startswith("  ") for ln in out.splitlines()) == 3
    got = pd.read_csv(curve)
    assert len(got) == 168 and list(got.columns)[:6] == ["slot", "date", "weekday", "hour", "likes", "log1p_likes"]
    assert list(got.columns)[6:] in ([], ["likes_low", "likes_high"])
    assert "what moves across the slots: " in out
    assert main(["best-time", "--input", str(many), "--models", str(models)]) == 2
    assert "3 rows with a valid id (give --id" in capsys.readouterr().err
    second = str(rows["id"].iloc[1])
    assert main(["best-time", "--input", str(many), "--id", second, "--models", str(models), "--top", "2"]) == 0
    assert f"id {second}," in capsys.readouterr().out
    assert main(["best-time", "--input", str(one), "--start", "not a date", "--models", str(models)]) == 2
