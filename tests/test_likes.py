"""Behaviour simulation: features without leakage, bucketing, the three likes stages on a tiny
fixture (tiny random classifier), determinism, and `tweetsim predict-likes` on awkward input."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from stages_helper import SHIPPED, one_regime_deploy, override, stage, write_params
from tweetsim.likes.config import ClassifierConfig, InferenceConfig
from tweetsim.text.runtime import EncoderConfig
from tweetsim.likes import features as F
from tweetsim.likes.classifier import bucketize, class_weights, verbalise
from tweetsim.likes.regressor import combine
from tweetsim.data.schema import write_tweets
from tweetsim.data.splits import SplitConfig, assign


def classifier_config(**changes) -> ClassifierConfig:
    """params.yaml's train_like_classifier as its config, with the test's changes."""
    return replace(ClassifierConfig.from_params(SHIPPED["train_like_classifier"]), **changes)


def torch_encoder() -> EncoderConfig:
    return replace(EncoderConfig.from_params(SHIPPED["encoder"]), runtime="torch")


def inference_config(**changes) -> InferenceConfig:
    """The Predictor's params of params.yaml (train_like_classifier + encoder), with the test's changes."""
    return replace(InferenceConfig.of(classifier_config(), EncoderConfig.from_params(SHIPPED["encoder"])), **changes)

TINY = {
    "train_like_classifier.model_name": "tiny-random", "train_like_classifier.max_steps": 6,
    "train_like_classifier.eval_every": 3, "train_like_classifier.embed_components": 2,
    "train_like_classifier.progress": False, "regress_within_bucket.xgb.n_estimators": 20,
    "regress_within_bucket.xgb.min_rows": 15,
}


def test_bucketize_edges():
    assert bucketize([0, 9, 10, 99, 100, 5000, 10**6], [0, 10, 100, 1000, 10000]).tolist() == [0, 0, 1, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="start at 0"):
        bucketize([1], [1, 10])
    w = class_weights(np.array([0, 0, 0, 1]), 3, max_weight=10)
    assert w[2] == 0 and w[1] > w[0]


def _toy():
    d = pd.to_datetime(["2020-01-01", "2020-01-03", "2020-01-02", "2020-01-05"], utc=True)
    return pd.DataFrame({"source": "s", "id": [1, 2, 3, 4], "date": d, "likes": [9, 99, 999, 0],
                         "username": ["a", "a", "a", "b"], "company": ["x", "x", "x", "y"]})


def test_shifted_history_uses_earlier_rows_only():
    t = _toy()
    h = F.history_features(t, train=t)
    # row 1 (first of account a): no history; row 3 (2nd by date): only row 1; row 2: rows 1 and 3
    assert h.loc[0, "acct_hist_n"] == 0 and np.isnan(h.loc[0, "acct_hist_mean"])
    assert h.loc[2, "acct_hist_mean"] == pytest.approx(np.log1p(9))
    assert h.loc[1, "acct_hist_median"] == pytest.approx(np.median(np.log1p([9, 999])))
    assert h.loc[1, "acct_hist_days_since"] == pytest.approx(1.0)
    # a predicted row sees every training row of its account; an unknown account sees nothing
    rows = pd.DataFrame({"username": ["a", "zz"], "company": ["x", "zz"],
                         "date": pd.to_datetime(["2020-02-01", None], utc=True)})
    tabs = {lv: F.history_table(t, lv) for lv in F.LEVELS}
    h2 = F.history_features(rows, tables=tabs)
    assert h2.loc[0, "acct_hist_n"] == 3 and h2.loc[1, "acct_hist_n"] == 0 and np.isnan(h2.loc[1, "brand_hist_mean"])


def test_crossfit_history_never_holds_the_rows_own_likes():
    rng = np.random.default_rng(1)
    n = 120
    t = pd.DataFrame({"source": "s", "id": np.arange(n), "username": rng.choice(list("abcdef"), n),
                      "company": rng.choice(list("xy"), n), "likes": rng.integers(0, 5000, n).astype(float),
                      "date": pd.Timestamp("2020-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 900, n), "D")})
    h = F.crossfit_history(t, 5, seed=13)
    size = t.groupby("username")["id"].transform("size").to_numpy()
    assert ((h["acct_hist_n"] >= 1) & (h["acct_hist_n"] <= size - 1)).all()  # others of the account, never itself
    for i in (0, 7, 50):
        t2 = t.copy()
        t2.loc[i, "likes"] = 10**6  # a row's own likes change nothing of its own history
        assert np.allclose(F.crossfit_history(t2, 5, seed=13).loc[i].to_numpy(float), h.loc[i].to_numpy(float), equal_nan=True)
    assert not np.allclose(F.crossfit_history(t2, 5, seed=13)["acct_hist_mean"], h["acct_hist_mean"])


def test_verbalise_and_combine():
    t = _toy().assign(content=[None, "hi <hyperlink>", "", None], n_photo=[1, 0, 0, 0], n_video=0, n_gif=0)
    texts = verbalise(t, F.history_features(t, train=t))
    assert texts[0].startswith("brand: x | account: @a | date: 2020-01")
    assert "account median likes: 9 over 1 tweets" in texts[2] and "text: hi <hyperlink>" in texts[1]
    probs = np.array([[0.8, 0.2], [0.1, 0.9]])
    z = np.log1p(np.array([[10.0, 100.0], [10.0, 100.0]]))
    assert combine(probs, z, np.ones(2), "argmax", True).round(6).tolist() == [10.0, 100.0]
    mix = combine(probs, z, np.array([1.0, 2.0]), "mixture", False)
    assert mix[0] == pytest.approx(np.expm1(0.8 * np.log1p(10) + 0.2 * np.log1p(100)))
    with pytest.raises(ValueError, match="unknown mode"):
        combine(probs, z, np.ones(2), "mean", True)


def test_rows_dot_does_not_depend_on_the_batch():
    X = np.random.default_rng(1).normal(size=(5000, 384)).astype(np.float32)
    W = np.random.default_rng(2).normal(size=(8, 384)).astype(np.float32)
    z = F.rows_dot(X, W)
    assert z.shape == (5000, 8) and np.allclose(z, X @ W.T, atol=1e-4)
    assert np.array_equal(np.concatenate([F.rows_dot(X[i : i + 1], W) for i in range(0, 5000, 997)]), z[::997])
    assert F.rows_dot(X[:0], W).shape == (0, 8)


def test_text_pca_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    v = rng.normal(size=(50, 6)).astype(np.float32)
    pca = F.TextPCA(3).fit(v)
    pca.save(tmp_path / "p.npz")
    again = F.TextPCA.load(tmp_path / "p.npz")
    assert np.allclose(pca.transform(v).to_numpy(), again.transform(v).to_numpy())
    assert list(again.transform(v).columns) == ["emb_pc0", "emb_pc1", "emb_pc2"]


@pytest.fixture(scope="module")
def fixture_data(sample_table, tmp_path_factory):
    """About 200 real sample rows: the first row with likes of every company, plus 40 behaviour rows."""
    tmp = tmp_path_factory.mktemp("likes_data")
    t = sample_table
    sup = t[t["likes"].notna()].sort_values(["company", "source", "id"]).groupby("company").head(1)
    beh = t[t["likes"].isna()].sort_values(["source", "id"]).head(40)
    table = pd.concat([sup, beh]).sort_values(["source", "id"]).reset_index(drop=True)
    (tmp / "data").mkdir()
    write_tweets(table, tmp / "data" / "tweets.parquet")
    params = write_params(tmp, **TINY)
    import yaml

    assign(table, SplitConfig.from_params(yaml.safe_load(params.read_text())["split"])).to_parquet(tmp / "data" / "splits.parquet", index=False)
    return tmp, params


def _run_pipeline(root: Path, params: Path, data: Path) -> Path:
    import yaml

    p = yaml.safe_load(params.read_text())
    models = root / "models"
    stage("train_like_classifier").main(str(params), str(data), str(models), str(root / "dvclive"), str(root / "metrics"))
    for edge in p["train_like_classifier"]["bucket_edges"]:
        stage("regress_within_bucket").main(str(params), str(data), str(models), str(edge))
    stage("combine_likes").main(str(params), str(data), str(models), str(root / "plots"), str(root / "metrics"))
    stage("backtest_likes").main(str(params), str(data), str(models))
    stage("deploy_likes").main(str(params), str(data), str(models))
    return models


@pytest.fixture(scope="module")
def trained(fixture_data, tmp_path_factory):
    tmp, params = fixture_data
    root = tmp_path_factory.mktemp("likes_run")
    return root, _run_pipeline(root, params, tmp / "data")


@pytest.mark.slow  # the likes chain trained once for the module (`trained`): minutes
def test_pipeline_trains_to_completion(trained, fixture_data):
    root, models = trained
    tmp, _ = fixture_data
    data = tmp / "data"
    table = pd.read_parquet(data / "tweets.parquet").merge(pd.read_parquet(data / "splits.parquet"), on=["source", "id"])
    for name in ("bucket_xgb_argmax", "bucket_xgb_mixture", "bucket_xgb_argmax_nosmear", "bucket_xgb_mixture_nosmear"):
        pred = pd.read_parquet(data / "predictions" / "likes" / f"{name}.parquet")
        ranged = name == "bucket_xgb_mixture"  # the CLI's variant (regress_within_bucket.final, smearing) has the range
        assert list(pred.columns) == ["regime", "source", "id", "pred_likes"] + (["pred_low", "pred_high"] if ranged else [])
        for regime in ("random", "unseen_brand", "unseen_time"):
            want = table[table[regime].isin(["val", "test"]) & table["likes"].notna()]
            got = pred[pred["regime"] == regime]
            assert sorted(zip(got["source"], got["id"])) == sorted(zip(want["source"], want["id"]))
        assert np.isfinite(pred["pred_likes"]).all() and (pred["pred_likes"] >= 0).all()
    smeared = pd.read_parquet(data / "predictions" / "likes" / "bucket_xgb_argmax.parquet")["pred_likes"]
    raw = pd.read_parquet(data / "predictions" / "likes" / "bucket_xgb_argmax_nosmear.parquet")["pred_likes"]
    assert (smeared >= raw - 1e-9).all()  # smearing factors are >= 1 (Jensen)
    # the default classifier is the head on the embeddings: its val figures are logged, no transformer is saved
    curves = root / "dvclive" / "random" / "plots" / "metrics" / "val_loss.tsv"
    assert curves.exists() and len(curves.read_text().splitlines()) == 2
    folder = models / "like_classifier" / "random"
    assert (folder / "head.npz").exists() and not (folder / "model.safetensors").exists()
    assert set(pd.read_csv(root / "plots" / "confusion.csv").columns) == {"regime", "actual_bucket", "predicted_bucket"}
    bundle = json.loads((models / "likes" / "bundle.json").read_text())
    assert bundle["regime"] == "random" and (models / "like_classifier" / "random" / "state.json").exists()


def _random_only(fixture_data, tmp_path: Path, **classifier) -> tuple[Path, Path]:
    """(params, data) in tmp_path: the fixture's rows, the `random` regime only, `classifier` params over."""
    import yaml

    tmp, params = fixture_data
    p = yaml.safe_load(params.read_text())
    p["split"]["regimes"] = ["random"]
    p = override(p, one_regime_deploy("random"))
    p["train_like_classifier"].update(classifier)
    path, data = tmp_path / "params.yaml", tmp_path / "data"
    path.write_text(yaml.safe_dump(p))
    data.mkdir()
    for f in ("tweets.parquet", "splits.parquet"):
        (data / f).write_bytes((tmp / "data" / f).read_bytes())
    return path, data


@pytest.mark.slow  # the likes chain trained once for the module (`trained`): minutes
def test_same_params_same_predictions(trained, fixture_data, tmp_path):
    """A second run gives identical predictions. To keep the test short it trains the `random`
    regime only: regimes are trained independently (each seeded), so its rows must match exactly."""
    tmp, _ = fixture_data
    params_again, again_data = _random_only(fixture_data, tmp_path)
    _run_pipeline(tmp_path, params_again, again_data)
    names = sorted(q.name for q in (again_data / "predictions" / "likes").glob("*.parquet"))
    assert len(names) == 5  # the four bucket variants and the router's backtest (served)
    for name in names:
        first = pd.read_parquet(tmp / "data" / "predictions" / "likes" / name)
        second = pd.read_parquet(again_data / "predictions" / "likes" / name)
        pd.testing.assert_frame_equal(first[first["regime"] == "random"].reset_index(drop=True), second, check_exact=True)


@pytest.mark.slow  # trains the classifier end to end
def test_finetune_classifier_mode(fixture_data, tmp_path):
    """`classifier: finetune` (the transformer fine-tuned on verbalised lines) trains, logs its curves, saves
    the transformer, and the Predictor predicts through it; a misspelt mode is named."""
    import yaml

    from tweetsim.likes.predictor import Predictor

    path, data = _random_only(fixture_data, tmp_path, classifier="finetune")
    p = yaml.safe_load(path.read_text())
    models = _run_pipeline(tmp_path, path, data)
    curves = tmp_path / "dvclive" / "random" / "plots" / "metrics" / "train_loss.tsv"
    assert curves.exists() and len(curves.read_text().splitlines()) >= 2
    folder = models / "like_classifier" / "random"
    assert (folder / "model.safetensors").exists() and not (folder / "head.npz").exists()
    pred = Predictor(models, models_of="random")
    assert pred.head is None
    likes, _ = pred.predict_with_probs(pd.read_parquet(data / "tweets.parquet").head(5))
    cls = pred.last_features[[f"p_bucket{k}" for k in range(5)]].to_numpy()
    assert np.isfinite(likes).all() and np.allclose(cls.sum(1), 1, atol=1e-5) and len(np.unique(cls.round(6), axis=0)) > 1
    p["train_like_classifier"]["classifier"] = "fine-tune"
    path.write_text(yaml.safe_dump(p))
    with pytest.raises(ValueError, match="train_like_classifier.classifier.*finetune"):
        stage("train_like_classifier").main(str(path), str(data), str(tmp_path / "m2"), str(tmp_path / "l2"), str(tmp_path / "x2"))


def test_embedding_head_out_of_fold_and_absent_buckets(tmp_path):
    from tweetsim.likes.classifier import EmbeddingHead, crossfit_folds, head_probs

    rng = np.random.default_rng(0)
    n = 120
    emb = rng.normal(size=(n, 6)).astype(np.float32)
    labels = (emb[:, 0] > 0).astype(int) * 2  # buckets 0 and 2; 1, 3, 4 never seen
    groups = np.array([f"@a{i % 12}" for i in range(n)])
    tr = np.arange(n) < 90
    p = classifier_config(head_c=1.0, class_weights=True, max_class_weight=10.0, crossfit_folds=3, seed=13)
    head, probs, k = head_probs(emb, labels, groups, tr, p, 5)
    assert k == 3 and probs.shape == (n, 5) and np.allclose(probs.sum(1), 1, atol=1e-6)
    assert (probs[:, [1, 3, 4]] == 0).all() and np.mean(probs.argmax(1) == labels) > 0.9
    assert np.array_equal(probs[~tr], head.predict_proba(emb[~tr]))  # val/test rows: the full head
    fold = crossfit_folds(groups[tr], labels[tr], 3, 13)
    held = np.flatnonzero(tr)[fold == 0]
    other = np.flatnonzero(tr)[fold != 0]
    assert np.array_equal(probs[held], EmbeddingHead.fit(emb[other], labels[other], 5, p).predict_proba(emb[held]))
    assert not np.allclose(probs[held], head.predict_proba(emb[held]))  # out of fold, not the full head's
    head.save(tmp_path / "head.npz")
    assert np.array_equal(EmbeddingHead.load(tmp_path / "head.npz").predict_proba(emb), head.predict_proba(emb))
    again = head_probs(emb, labels, groups, tr, p, 5)[1]
    assert np.array_equal(again, probs)


def test_embedding_head_fits_each_distinct_row_once_with_its_copies_weight():
    """Rows sharing one vector (the textless rows at scale) are fitted once, weighted by their copies:
    the same objective, so the same head as fitting every copy; without copies, the same bytes."""
    from sklearn.linear_model import LogisticRegression
    from tweetsim.likes.classifier import EmbeddingHead, distinct_rows

    rng = np.random.default_rng(3)
    X = rng.normal(size=(600, 5))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 1)
    X[:400], y[:400] = X[7], rng.integers(0, 3, 400)  # one vector, copied with every label
    w = np.array([1.0, 2.5, 4.0])[y]
    Xd, yd, sw = distinct_rows(X, y, w)
    assert len(Xd) == 200 + 3 and sw.sum() == pytest.approx(w.sum())
    for label in range(3):  # the copies' weight lands on their (vector, label) pair
        at = np.flatnonzero((Xd == X[7]).all(1) & (yd == label))
        assert len(at) == 1 and sw[at[0]] == pytest.approx(w[:400][y[:400] == label].sum())
    assert list(Xd[0]) == list(X[0])  # order of first appearance
    full = LogisticRegression(C=0.5, tol=1e-10, max_iter=5000).fit(X, y, sample_weight=w)
    once = LogisticRegression(C=0.5, tol=1e-10, max_iter=5000).fit(Xd, yd, sample_weight=sw)
    assert np.allclose(full.predict_proba(X), once.predict_proba(X), atol=1e-7)
    p = classifier_config(head_c=0.5, class_weights=True, max_class_weight=10.0)  # the head: as every copy fitted
    mu, sd = X.mean(0), X.std(0) + 1e-6
    every = LogisticRegression(C=0.5, max_iter=1000).fit((X - mu) / sd, y, sample_weight=class_weights(y, 3, 10.0)[y])
    assert np.allclose(EmbeddingHead.fit(X, y, 3, p).predict_proba(X), every.predict_proba((X - mu) / sd), atol=1e-4)
    plain = rng.normal(size=(50, 4))
    same = distinct_rows(plain, np.arange(50) % 3, np.full(50, 0.25))
    assert same[0].tobytes() == plain.tobytes() and list(same[1]) == list(np.arange(50) % 3) and (same[2] == 0.25).all()


@pytest.mark.slow  # the likes chain trained once for the module (`trained`): minutes
def test_predict_likes_cli_awkward_input(trained, tmp_path, capsys):
    from tweetsim.apps.cli import main

    _, models = trained
    # no media, no date column; empty content; an unknown account and brand; ids out of order
    src = pd.DataFrame({"id": [7, 3, 11], "content": ["Big launch today! <hyperlink>", "", None],
                        "username": ["UPMCnews", "nobody_knows_me", None], "inferred company": ["upmc", "no-such-brand", None]})
    path = tmp_path / "in.csv"
    src.to_csv(path, index=False)
    out = tmp_path / "out" / "likes.csv"
    assert main(["predict-likes", "--input", str(path), "--output", str(out), "--models", str(models)]) == 0
    got = pd.read_csv(out)
    assert list(got.columns) == ["id", "likes", "likes_low", "likes_high", "route", "route_reason", "status", "reason"]
    assert got["route"].tolist() == ["account", "new_brand", "new_brand"]
    assert got["route_reason"][2] == "brand (none given) has no labelled tweets" and got["id"].tolist() == [7, 3, 11]
    assert (got["likes"] >= 0).all() and got["likes"].dtype.kind == "i"
    # xlsx with media and date present goes through the same reader
    full = src.assign(date=["2021-05-01 10:00:00", "2022-01-01 00:00:00", "2019-03-03 12:00:00"],
                      media=["[Photo(previewUrl='https://x/a.jpg', fullUrl='https://x/a.jpg')]", "[]", "not media"])
    xlsx = tmp_path / "in.xlsx"
    full.to_excel(xlsx, index=False)
    assert main(["predict-likes", "--input", str(xlsx), "--output", str(out), "--models", str(models)]) == 0
    assert pd.read_csv(out)["id"].tolist() == [7, 3, 11]
    assert "row 4" in capsys.readouterr().err  # the unparsable media is reported, the row still predicted


def test_predict_likes_cli_errors(tmp_path, capsys):
    from tweetsim.apps.cli import main

    path = tmp_path / "in.csv"
    pd.DataFrame({"id": [1]}).to_csv(path, index=False)
    assert main(["predict-likes", "--input", str(path), "--output", str(tmp_path / "o.csv"), "--models", str(tmp_path)]) == 2
    assert "router.json is missing" in capsys.readouterr().err
    assert main(["predict-likes", "--input", str(tmp_path / "nope.csv"), "--output", str(tmp_path / "o.csv")]) == 2


def test_base_features_text_and_dates():
    rows = pd.DataFrame({"content": ["Hi THERE!! ok?", None, "caf\u00e9 \U0001F600 \u00a0x\ty", ""],
                         "caption": ["a photo", None, "", "xy"],
                         "date": pd.to_datetime(["2018-01-02 03:00", "2020-02-29 23:00", None, "2018-01-01 00:00"], utc=True),
                         "followers": [99.0, None, -5.0, 0.0]})
    f = F.base_features(rows)
    assert f["content_chars"].tolist() == [14, 0, 11, 0] and f["has_content"].tolist() == [1, 0, 1, 0]
    assert f["content_words"].tolist() == [3, 0, 4, 0]  # any Unicode whitespace splits words
    assert f["content_upper_frac"].tolist() == [6 / 14, 0, 0, 0]
    assert f["content_exclaim"].tolist() == [2, 0, 0, 0] and f["content_question"].tolist() == [1, 0, 0, 0]
    assert f["content_nonascii"].tolist() == [0, 0, 3, 0] and f["caption_chars"].tolist() == [7, 0, 0, 2]
    assert f["log_followers"][0] == np.log1p(99.0) and np.isnan(f["log_followers"][1])
    assert f["log_followers"][2] == 0 and f["days"][0] == pytest.approx(1 + 3 / 24) and np.isnan(f["year"][2])
    assert np.isnan(f["log_acct_avg_likes"]).all() and list(f.index) == [0, 1, 2, 3]


@pytest.mark.slow  # the likes chain trained once for the module (`trained`): minutes
def test_predict_with_probs(trained, fixture_data):
    from tweetsim.likes.predictor import Predictor

    _, models = trained
    tmp, _ = fixture_data
    rows = pd.read_parquet(tmp / "data" / "tweets.parquet").head(12)
    pred = Predictor(folder=models / "likes" / "deploy" / "account")
    likes, probs = pred.predict_with_probs(rows)
    assert probs.shape == (12, len(pred.state.edges)) and np.allclose(probs.sum(1), 1, atol=1e-5) and (probs >= 0).all()
    assert np.array_equal(likes, pred.predict(rows)) and set(pred.timings) == {"features", "classifier", "embedding", "trees"}
    from tweetsim.text import embed

    pred.overlap = False  # the two transformer passes one after the other (2 threads): the same predictions
    embed.clear_cache()
    assert np.array_equal(likes, pred.predict(rows))
    pred.overlap = True
    # one row at a time gives the batched predictions: exactly in float32; in bfloat16 (the default)
    # each op's rounding depends on the batch's padding, so within 1e-2 in log1p
    one = np.array([pred.predict(rows.iloc[[i]])[0] for i in range(3)])
    assert pred.p.inference_dtype == "bfloat16"
    assert np.allclose(np.log1p(one), np.log1p(likes[:3]), atol=1e-2, rtol=0)
    pred.p = replace(pred.p, inference_dtype="float32")
    likes32 = pred.predict(rows)
    one32 = np.array([pred.predict(rows.iloc[[i]])[0] for i in range(3)])
    assert np.allclose(np.log1p(one32), np.log1p(likes32[:3]), atol=1e-6, rtol=0)


def test_bfloat16_embeddings_close_to_float32_and_memoised_apart():
    from tweetsim.text import embed
    from tweetsim.likes.fit import embed_texts

    texts = ["New drop today <hyperlink>", "Thank you for 1M followers!", ""]
    p = inference_config(embed_components=2, embed_model=None, embed_max_length=48, encoder=torch_encoder())
    e32 = embed_texts(texts, replace(p, inference_dtype="float32"))
    e16 = embed_texts(texts, replace(p, inference_dtype="bfloat16"))
    assert e16.dtype == np.float32 and np.allclose(np.linalg.norm(e16, axis=1), 1, atol=1e-5)
    assert (np.sum(e32 * e16, 1) > 0.999).all()
    assert np.array_equal(e32, embed.encode(texts, max_length=48))  # float32 results are not replaced by bf16 ones
    with pytest.raises(ValueError, match="inference_dtype"):
        embed.inference_autocast("int4")


def test_embed_text_modes_and_the_content_vectors_evaluate_shares(tmp_path, caplog):
    """embed_text picks the strings each row's vectors come from; `content` at max_length 128 is
    evaluate's own call, so a stage that embedded the tweets first leaves evaluate nothing to compute."""
    from tweetsim.likes.fit import embed_rows, embed_texts
    from tweetsim.text import embed
    from tweetsim.text.runtime import EncoderConfig

    rows = pd.DataFrame({"content": ["New drop today <hyperlink>", "Thank you!", None],
                         "caption": ["a red shoe", None, "a logo"], "ocr_text": ["SALE", None, None]})
    enc = {"runtime": "onnx-int8", "workers": 1, "cache_dir": str(tmp_path), "round_bits": 10}
    p = inference_config(embed_components=2, embed_model=None, embed_max_length=128, inference_dtype="float32",
                         encoder=EncoderConfig.from_params(enc))
    assert F.texts_to_embed(rows, "content+media") == [["New drop today <hyperlink>", "Thank you!", ""], ["a red shoe SALE", "", "a logo"]]
    joined = embed_rows(rows, replace(p, embed_text="joined"))
    assert np.array_equal(joined, embed_texts(["New drop today <hyperlink> a red shoe SALE", "Thank you!", "a logo"], p))
    both = embed_rows(rows, replace(p, embed_text="content+media"))
    assert both.shape == (3, 2 * joined.shape[1])
    content = embed_rows(rows, replace(p, embed_text="content"))
    assert np.array_equal(both[:, :joined.shape[1]], content)
    embed._memo.clear()  # a fresh process, as evaluate is: the vectors come from the shared cache, none computed
    with caplog.at_level("INFO", logger="tweetsim.text.embed"):
        got = embed.encode(F.texts_to_embed(rows, "content")[0], None, encoder=EncoderConfig.from_params(enc))
    assert np.array_equal(got, content) and "3 distinct texts, 3 from the cache, 0 computed" in caplog.text
    with pytest.raises(ValueError, match="train_like_classifier.embed_text: unknown 'caption'"):
        embed_rows(rows, replace(p, embed_text="caption"))


@pytest.mark.slow  # the likes chain trained once for the module (`trained`): minutes
def test_regressors_matrix_path_matches_dataframe(trained, fixture_data):
    """predict_log / the gate feed xgboost a float matrix in the trained column order: same values
    as xgboost's own DataFrame path (which checks feature names), even with the columns shuffled."""
    import xgboost as xgb

    from tweetsim.likes.predictor import Predictor

    _, models = trained
    tmp, _ = fixture_data
    pred = Predictor(folder=models / "likes" / "deploy" / "account")
    X = pd.read_parquet(tmp / "data" / "likes" / "features.parquet")
    X = X[list(reversed(pred.state.feature_names))]
    for r in pred.regs:
        assert np.array_equal(r.predict_log(X), np.clip(r.model.predict(X[r.features].astype(float)), 0, None))
    if pred.gate is not None:
        want = pred.gate.booster.predict(xgb.DMatrix(X[pred.gate.features].astype(float)),
                                         iteration_range=(0, pred.gate.meta["best_iteration"] + 1))
        assert np.array_equal(pred.gate.predict(X), want.reshape(len(X), -1))


@pytest.mark.slow  # the likes chain trained once for the module (`trained`): minutes
def test_unseen_brand_regime_has_no_organisers_like_stats(trained, fixture_data):
    tmp, params = fixture_data
    rows = pd.DataFrame({"acct_avg_likes": [5.0, None], "acct_min_likes": [1, 2], "followers": [10.0, 20.0]})
    out = F.hide_like_stats(rows)
    assert out["acct_avg_likes"].isna().all() and out["acct_min_likes"].isna().all()
    assert out["followers"].tolist() == [10.0, 20.0] and rows["acct_avg_likes"].tolist()[0] == 5.0  # caller's table untouched

    import yaml

    assert yaml.safe_load(params.read_text())["train_like_classifier"]["hide_like_stats"] == ["unseen_brand"]
    f = pd.read_parquet(tmp / "data" / "likes" / "features.parquet")
    brand = f[f["regime"] == "unseen_brand"]
    assert len(brand) and brand["log_acct_avg_likes"].isna().all() and brand["log_acct_median_likes"].isna().all()
    assert f.loc[f["regime"] == "random", "log_acct_avg_likes"].notna().any()  # the other regimes keep them


def test_context_features_pool_known_and_input_rows_without_likes():
    d = pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-04"], utc=True)
    known_tweets = pd.DataFrame({"username": ["a", "a", "a", "b"], "company": ["x", "x", "x", "x"], "date": d,
                                 "n_video": [1, 1, 0, 0], "video_views": [100.0, 10000.0, None, None], "likes": [1, 2, 3, 4]})
    known = F.context_rows(known_tweets)
    rows = pd.DataFrame({"username": ["a", "a", "zz", ""], "company": ["x", "x", "new", ""],
                         "date": pd.to_datetime(["2020-02-01", "2020-01-01", None, "2020-01-01"], utc=True),
                         "n_video": [1, 1, 1, 0], "video_views": [1000.0, 100.0, 50.0, None], "likes": [5, 6, 7, 8]})
    c = F.context_features(rows, known)
    # account a: 3 known tweets + the new one; the second row repeats a known tweet (same account, date): once
    assert c["acct_ctx_n"].tolist()[:2] == [4.0, 4.0] and c.loc[0, "acct_ctx_n_views"] == 3
    assert c.loc[0, "acct_ctx_views_median"] == pytest.approx(np.log1p(1000.0))
    assert c.loc[0, "acct_ctx_video_frac"] == pytest.approx(3 / 4) and c.loc[0, "acct_ctx_views_max"] == pytest.approx(np.log1p(1e4))
    assert c.loc[0, "brand_ctx_n"] == 5  # brand x: a's 4 and b's 1
    # an account seen only in the input pools its own rows; an empty username or brand gets none
    assert c.loc[2, "acct_ctx_n"] == 1 and c.loc[2, "brand_ctx_views_median"] == pytest.approx(np.log1p(50.0))
    assert c.loc[3, "acct_ctx_n"] == 0 and np.isnan(c.loc[3, "acct_ctx_views_median"]) and c.loc[3, "brand_ctx_n"] == 0
    # label-free: other likes, the same features
    again = F.context_features(rows.assign(likes=0), F.context_rows(known_tweets.assign(likes=10**6)))
    pd.testing.assert_frame_equal(c, again)
    text = verbalise(rows.assign(source="s", id=range(4)), None, 600, c)
    assert "account video views: 1.0k median over 3 videos" in text[0] and "account video views" not in text[3]


@pytest.mark.slow  # the likes chain trained once for the module (`trained`): minutes
def test_history_splits_of_test_rows_and_hidden_history(trained, fixture_data):
    from tweetsim.likes.fit import regime_history

    d = pd.to_datetime(["2020-01-01", "2020-01-02", "2020-02-01", "2020-02-02", "2020-03-01", "2020-03-02"], utc=True)
    t = pd.DataFrame({"source": "s", "id": range(6), "date": d, "likes": [9, 99, 999, 9999, 1, 1], "username": "a",
                      "company": "x", "r": ["train", "train", "val", "val", "test", "test"]})
    hist, tables = regime_history(t, "r", classifier_config(test_history=["train", "val"]))
    # training rows: earlier training rows; val rows: the 2 training rows; test rows: train + val
    assert hist["acct_hist_n"].tolist() == [0, 1, 2, 2, 4, 4] and tables["username"].loc["a", "n"] == 4
    assert hist.loc[4, "acct_hist_median"] == pytest.approx(np.median(np.log1p([9, 99, 999, 9999])))
    hist, _ = regime_history(t, "r", classifier_config(test_history=["train"]))
    assert hist["acct_hist_n"].tolist() == [0, 1, 2, 2, 2, 2]
    hist, _ = regime_history(t, "r", classifier_config(test_history=["train", "val"], hide_history=["r"]))
    assert (hist["acct_hist_n"] == 0).all() and hist.drop(columns=["acct_hist_n", "brand_hist_n"]).isna().all().all()
    with pytest.raises(ValueError, match="test_history"):
        regime_history(t, "r", classifier_config(test_history=["test"]))
    # the pipeline's own features: unseen_brand (hide_history) has history on no row, as no test row can
    tmp, _ = fixture_data
    f = pd.read_parquet(tmp / "data" / "likes" / "features.parquet")
    b = f[f["regime"] == "unseen_brand"]
    assert (b["acct_hist_n"] == 0).all() and b["brand_hist_mean"].isna().all() and b["acct_hist_median"].isna().all()
    assert (f.loc[f["regime"] == "random", "acct_hist_n"] > 0).any()
    assert {"acct_ctx_views_median", "brand_ctx_n"} <= set(f.columns)


@pytest.mark.slow  # the likes chain trained once for the module (`trained`): minutes
def test_deploy_fit_trains_every_route_on_every_labelled_row(trained, fixture_data, tmp_path):
    """models/likes/deploy/<route>: every row with likes is a training row of every route; each route's
    classifier steps and trees are its settings_from regime's early-stopped ones and its hidden levels are
    blank on every training row; a second fit reloads with identical predictions and routes."""
    import shutil

    from tweetsim.likes.predictor import Predictor
    from tweetsim.likes.regressor import BucketGate, BucketRegressor
    from tweetsim.likes.router import ROUTES, Router

    root, models = trained
    tmp, params = fixture_data
    tweets = pd.read_parquet(tmp / "data" / "tweets.parquet")
    n = int(tweets["likes"].notna().sum())
    deploy = models / "likes" / "deploy"
    index = json.loads((deploy / "router.json").read_text())
    assert index["routes"] == {r: r for r in ROUTES} and index["n_rows"] == n
    feats = pd.read_parquet(deploy / "new_brand" / "classifier" / "history_all_username.parquet")
    assert int(feats["n"].sum()) == n  # the history tables (and so the routes) come from every labelled row
    for route, src in (("account", "random"), ("brand", "random"), ("new_brand", "unseen_brand")):
        folder = deploy / route
        b = json.loads((folder / "bundle.json").read_text())
        assert b["regime"] == "deploy" and b["route"] == route and b["settings_from"] == src and b["n_rows"] == n
        steps = json.loads((models / "like_classifier" / src / "training.json").read_text())["best_step"]
        got = json.loads((folder / "classifier" / "training.json").read_text())
        assert b["classifier_steps"] == steps == got["steps_run"] == got["best_step"]  # trained to that step, not stopped
        buckets = bucketize(tweets["likes"].dropna().astype(float), [float(e) for e in b["edges"]])
        for k, e in enumerate(b["edges"]):
            reg = BucketRegressor.load(folder / "regressor" / e)
            want = BucketRegressor.load(models / "like_regressor" / e / src).meta["best_iteration"] + 1
            assert reg.model.get_booster().num_boosted_rounds() == want == b["trees"][e] and not reg.meta["early_stopping"]
            assert reg.meta["n_train"] == (n if reg.meta["fallback_all_rows"] else int((buckets == k).sum()))
        gate = BucketGate.load(folder / "gate")
        assert gate.booster.num_boosted_rounds() == b["gate_trees"] == gate.meta["best_iteration"] + 1
        ranges = json.loads((folder / "intervals.json").read_text())["groups"]["all"]
        assert ranges["low"] <= 0 <= ranges["high"] and "backtest" in ranges["from"]
    rows = tweets.head(12)
    first = Router(deploy)
    likes, low, high = first.predict_with_range(rows)
    routes = first.last_routes[0].copy()
    assert (low <= likes).all() and (likes <= high).all() and (low < high).any()
    # refit into a copy (same params, same data): the reloaded models predict the same, by the same routes
    again = tmp_path / "models"
    shutil.copytree(models, again, ignore=shutil.ignore_patterns("deploy"))
    stage("deploy_likes").main(str(params), str(tmp / "data"), str(again))
    second = Router(again / "likes" / "deploy")
    assert np.array_equal(second.predict(rows), likes) and np.array_equal(second.ranges[1], high)
    assert np.array_equal(second.last_routes[0], routes)
    # --models-of keeps a regime's models; they differ from the routes'
    regime = Predictor(models, models_of="random")
    assert regime.bundle["regime"] == "random" and not np.array_equal(regime.predict(rows), likes)
    with pytest.raises(FileNotFoundError, match="not a trained regime"):
        Predictor(models, models_of="no_such_regime")


@pytest.mark.slow  # the likes chain trained once for the module (`trained`): minutes
def test_router_picks_each_route_from_the_row_alone(trained):
    """A known account, a new account of a known brand, an unknown brand, an unknown brand whose account has
    the organisers' like statistics: each row's route is the same alone as within any file, and the
    new_brand route reads no history."""
    from tweetsim.likes.router import Router, route_rows

    _, models = trained
    router = Router(models / "likes" / "deploy")
    acct = router.tables["username"]
    user = acct.index[0]
    brand = router.tables["company"].index[0]
    rows = pd.DataFrame({"source": "cli", "id": [1, 2, 3, 4], "content": ["Big news <hyperlink>"] * 4,
                         "username": [user, "brand_new_account", "nobody", "somebody"],
                         "company": ["", brand, "no-such-brand-anywhere", "no-such-brand-either"],
                         "date": pd.to_datetime(["2022-05-01 10:00"] * 4, utc=True),
                         "acct_avg_likes": [50.0, None, None, 5000.0]})
    routes, reasons = route_rows(rows, router.tables)
    assert routes.tolist() == ["account", "brand", "new_brand", "brand"]
    assert f"@{user} has {int(acct.loc[user, 'n'])} labelled tweets" in reasons[0] and "no labelled tweets" in reasons[2]
    assert "like statistics" in reasons[3]
    assert route_rows(rows, router.tables, stats_route=False)[0].tolist() == ["account", "brand", "new_brand", "new_brand"]
    likes = router.predict(rows)
    assert router.last_routes[0].tolist() == routes.tolist() and np.isfinite(likes).all()
    for i in range(4):  # alone, and in another order: the same route
        assert router.route(rows.iloc[[i]])[0][0] == routes[i]
    assert router.route(rows.iloc[::-1])[0].tolist() == routes[::-1].tolist()
    feats = router.last_features
    assert feats.loc[1, [c for c in feats.columns if c.startswith("acct_hist_") and c != "acct_hist_n"]].isna().all()
    assert feats.loc[2, [c for c in feats.columns if "_hist_" in c and not c.endswith("_hist_n")]].isna().all()
    assert feats.loc[2, ["lookalike_level", "lookalike_sim"]].notna().all()  # the new_brand route reads look-alike brands
    # the brand route's answer: its own model and the account route's, blended in log1p (deploy_likes.brand_blend);
    # a row of another route in the same call keeps its own model's answer
    w = router.brand_blend
    assert 0 < w < 1
    own, other = router.routes["brand"].own.predict(rows.iloc[[1]]), router.routes["account"].predict(rows.iloc[[1]])
    assert np.log1p(likes[1]) == pytest.approx(w * np.log1p(own[0]) + (1 - w) * np.log1p(other[0]), abs=1e-9)
    assert router.predict(rows.iloc[[0]])[0] == pytest.approx(likes[0], abs=1e-6 * max(1.0, likes[0]))
    blended, low, high = router.predict_with_range(rows)
    assert (low <= blended).all() and (blended <= high).all()
    _, factors = router.explain(rows)  # the blended factors add up to the blended prediction
    assert factors.sum(axis=1).to_numpy() == pytest.approx(np.log1p(blended), abs=1e-4)


@pytest.mark.slow  # the likes chain trained once for the module (`trained`): minutes
def test_backtest_keeps_test_brands_and_later_rows_out(trained, fixture_data, monkeypatch):
    """The backtest fits each regime's routes on its training rows only: no test row (so no held-out brand
    of unseen_brand, no later row of unseen_time) is among the rows any route model is fitted on, and
    val rows are routed with the training rows' history, test rows with train + val's."""
    import tweetsim.likes.backtest as BT

    _, models = trained
    tmp, params = fixture_data
    data = tmp / "data"
    p = yaml.safe_load(params.read_text())
    splits = pd.read_parquet(data / "splits.parquet")
    seen = []
    real = BT.fit_route

    def spy(rows, *args, **kw):
        seen.append(rows[["source", "id"]].assign(folder=str(args[7])))  # out: <tmp backtest-REGIME-*>/<route>
        return real(rows, *args, **kw)

    monkeypatch.setattr(BT, "fit_route", spy)
    preds, cal = BT.backtest(p, data / "tweets.parquet", data / "captions.parquet", data / "ocr.parquet",
                             data / "splits.parquet", models)
    labelled = pd.read_parquet(data / "tweets.parquet")
    labelled = labelled[labelled["likes"].notna()].merge(splits, on=["source", "id"])
    seen = pd.concat(seen)
    for regime in p["split"]["regimes"]:
        fitted = seen[seen["folder"].str.contains(f"backtest-{regime}-", regex=False)]
        keys = set(zip(fitted["source"], fitted["id"]))
        side = dict(zip(zip(labelled["source"], labelled["id"]), labelled[regime]))
        assert keys and {side[key] for key in keys} == {"train"}
        test = labelled[labelled[regime] == "test"]
        if regime == "unseen_brand":
            train_brands = set(labelled.loc[labelled[regime] == "train", "company"])
            assert not set(test["company"]) & train_brands
            assert (preds.loc[(preds["regime"] == regime) & (preds["side"] == "test"), "route"] == "new_brand").all()
        got = preds[(preds["regime"] == regime) & (preds["side"] == "test")]
        assert sorted(zip(got["source"], got["id"])) == sorted(zip(test["source"], test["id"]))
        assert (got["pred_low"] <= got["pred_likes"]).all() and (got["pred_likes"] <= got["pred_high"]).all()
    assert set(cal["regime"]) == set(p["split"]["regimes"]) and cal["likes"].notna().all()


@pytest.mark.slow  # the likes chain trained once for the module (`trained`): minutes
def test_predict_likes_writes_ordered_ranges(trained, tmp_path):
    from tweetsim.apps.cli import main

    _, models = trained
    src = pd.DataFrame({"id": [5, 1, 9, 2], "content": ["New drop <hyperlink>", "", "Thanks!", None],
                        "username": ["UPMCnews", "nobody_knows_me", "UPMCnews", None],
                        "inferred company": ["upmc", "no-such-brand", "upmc", None],
                        "date": ["2021-05-01 10:00:00"] * 4})
    path, out = tmp_path / "in.csv", tmp_path / "likes.csv"
    src.to_csv(path, index=False)
    assert main(["predict-likes", "--input", str(path), "--output", str(out), "--models", str(models)]) == 0
    got = pd.read_csv(out)
    assert list(got.columns) == ["id", "likes", "likes_low", "likes_high", "route", "route_reason", "status", "reason"]
    assert got["route"].tolist() == ["account", "new_brand", "account", "new_brand"]
    assert got["route_reason"][1] == "brand no-such-brand has no labelled tweets, account @nobody_knows_me no like statistics"
    assert got["id"].tolist() == [5, 1, 9, 2] and (got["likes_low"] >= 0).all()
    assert (got["likes_low"] <= got["likes"]).all() and (got["likes"] <= got["likes_high"]).all()
    assert (got["likes_low"] < got["likes_high"]).all()
    assert main(["predict-likes", "--input", str(path), "--output", str(out), "--models", str(models), "--two-columns"]) == 0
    assert list(pd.read_csv(out).columns) == ["id", "likes"]
    assert main(["predict-likes", "--input", str(path), "--output", str(out), "--models", str(models), "--models-of", "unseen_time"]) == 0
    assert list(pd.read_csv(out).columns)[:4] == ["id", "likes", "likes_low", "likes_high"]


@pytest.mark.slow  # the likes chain trained once for the module (`trained`): minutes
def test_ranges_calibrated_on_val_and_brand_folds(trained, fixture_data):
    """Each regime's range comes from its val rows; unseen_brand's (interval.brand_folds_regimes) also from
    its train rows in brand-grouped folds, each predicted by trees refitted without its brands."""
    _, models = trained
    tmp, _ = fixture_data
    data = tmp / "data"
    table = pd.read_parquet(data / "tweets.parquet").merge(pd.read_parquet(data / "splits.parquet"), on=["source", "id"])
    table = table[table["likes"].notna()]
    for regime in ("random", "unseen_brand", "unseen_time"):
        g = json.loads((models / "likes" / "intervals" / f"{regime}.json").read_text())["groups"]["all"]
        side = table[regime]
        want = int((side == "val").sum()) + (int((side == "train").sum()) if regime == "unseen_brand" else 0)
        assert g["n"] == want and g["low"] <= 0 <= g["high"]
        assert ("brand folds" in g["from"]) == (regime == "unseen_brand")
    for route, regimes in (("account", "unseen_time"), ("new_brand", "unseen_brand")):
        g = json.loads((models / "likes" / "deploy" / route / "intervals.json").read_text())["groups"]["all"]
        assert f"backtest of {regimes}" in g["from"]


def test_crossfit_folds_keep_each_account_on_one_side():
    from tweetsim.likes.classifier import crossfit_folds

    rng = np.random.default_rng(0)
    groups = rng.choice([f"acct{i}" for i in range(40)], 500)
    labels = rng.integers(0, 5, 500)
    fold = crossfit_folds(groups, labels, 3, seed=13)
    assert set(fold) == {0, 1, 2}  # every row in a fold
    for g in np.unique(groups):
        assert len(set(fold[groups == g])) == 1, f"account {g} on both sides of a fold"
    assert (fold == crossfit_folds(groups, labels, 3, seed=13)).all()
    with pytest.raises(ValueError, match="fewer than"):
        crossfit_folds(["a", "a", "b"], [0, 1, 0], 3, seed=13)


def test_crossfit_probs_every_training_row_out_of_fold(monkeypatch):
    """Each training row is predicted exactly once, by a classifier that saw none of its account's rows."""
    import tweetsim.likes.fit as B
    import tweetsim.likes.classifier as LM

    texts = [f"row{i}" for i in range(60)]
    users = np.array([f"u{i % 9}" for i in range(60)])
    labels = np.arange(60) % 3
    tr, va = np.arange(60) < 45, np.arange(60) >= 45
    predicted = {}

    def fake_train(train_texts, *a, **k):
        return None, set(train_texts), [], 0

    def fake_proba(tok, seen, batch, *a, **k):
        for t in batch:
            predicted.setdefault(t, []).append(seen)
        return np.full((len(batch), 3), 1 / 3, np.float32)

    monkeypatch.setattr(LM, "train_classifier", fake_train)
    monkeypatch.setattr(B, "predict_proba", fake_proba)
    p = classifier_config(seed=13, max_length=8, eval_batch_size=4, inference_dtype=None)
    groups = B.account_groups(pd.DataFrame({"username": users}))
    out = B.crossfit_probs(texts, labels, groups, tr, va, p, torch_encoder(), 3, 3, progress=False)
    assert out.shape == (45, 3) and sorted(predicted) == sorted(texts[i] for i in np.flatnonzero(tr))
    for i in np.flatnonzero(tr):
        (seen,) = predicted[texts[i]]
        same_account = {texts[j] for j in np.flatnonzero(users == users[i])}
        assert not seen & same_account and not seen & {texts[j] for j in np.flatnonzero(va)}


def test_side_by_side_returns_both_results_and_raises_the_workers_error():
    import torch

    from tweetsim.likes.predictor import _side_by_side

    before = torch.get_num_threads()
    (a, _), (b, _) = _side_by_side(lambda: torch.get_num_threads(), lambda: "second")
    assert (a, b) == (1, "second") and torch.get_num_threads() == before  # one thread each, restored after

    def fail():
        raise ValueError("encoder broke")

    with pytest.raises(ValueError, match="encoder broke"):
        _side_by_side(lambda: 1, fail)
    assert torch.get_num_threads() == before


@pytest.mark.slow  # the likes chain trained once for the module (`trained`): minutes
def test_best_time_refuses_slots_past_the_last_date_and_writes_its_curve_atomically(trained, tmp_path, capsys):
    from tweetsim.apps.cli import main

    _, models = trained
    src = tmp_path / "post.csv"
    pd.DataFrame({"id": [4], "content": ["Big match tonight"], "username": ["UPMCnews"], "inferred company": ["upmc"],
                  "date": ["2021-05-01 10:00:00"]}).to_csv(src, index=False)
    for start in ("2262-04-11 23:00", "3000-01-01"):
        assert main(["best-time", "--input", str(src), "--models", str(models), "--start", start]) == 2
        assert "Traceback" not in capsys.readouterr().err
    out = tmp_path / "new" / "curve.csv"
    assert main(["best-time", "--input", str(src), "--models", str(models), "--output", str(out)]) == 0
    assert "route account" in capsys.readouterr().out
    assert len(pd.read_csv(out)) == 168 and not list(out.parent.glob("*.partial"))
