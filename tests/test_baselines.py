import numpy as np
import pandas as pd
import pytest

from tweetsim.likes.baselines import likes_baselines
from tweetsim.text.retrieval import Retriever
from tweetsim.likes.features import known_splits_for_test

T = lambda s: pd.Timestamp(s, tz="UTC")  # noqa: E731


def frame(rows):
    df = pd.DataFrame(rows, columns=["source", "id", "date", "username", "company", "content", "caption", "likes"])
    df["date"] = pd.to_datetime(df["date"], utc=True)
    return df


def test_likes_baselines_use_training_rows_only():
    train = frame([("s", 1, "2020-01-01", "a", "x", None, None, 10), ("s", 2, "2020-01-02", "a", "x", None, None, 30),
                   ("s", 3, "2020-01-03", "b", "x", None, None, 1000)])
    rows = frame([("s", 4, "2020-02-01", "a", "x", None, None, 5), ("s", 5, "2020-02-01", "new", "y", None, None, 5)])
    got = likes_baselines(train, rows)
    assert got["median"].tolist() == [30.0, 30.0]
    assert got["account_median"].tolist() == [20.0, 30.0]
    # test rows: per-account medians over train + val rows (test_history), the constant still the training median
    val = frame([("s", 6, "2020-01-20", "new", "y", None, None, 7), ("s", 7, "2020-01-21", "a", "x", None, None, 50)])
    got = likes_baselines(train, rows, pd.concat([train, val]))
    assert got["median"].tolist() == [30.0, 30.0] and got["account_median"].tolist() == [30.0, 7.0]
    # the stage takes the splits from the classifier's params, through the same check: test rows never
    assert known_splits_for_test(["val", "train"]) == ["train", "val"]
    assert known_splits_for_test(None) == ["train"]
    with pytest.raises(ValueError, match="test_history"):
        known_splits_for_test(["train", "test"])


POOL = frame([
    ("s", 1, "2020-01-01", "a", "x", "a old", None, None),
    ("s", 2, "2020-03-01", "a", "x", "a march", None, None),
    ("s", 3, "2020-06-01", "a", "x", "a june", None, None),
    ("s", 4, "2020-02-01", "b", "x", "b feb", None, None),
    ("s", 5, "2020-02-01", "c", "z", "c feb", None, None),
    ("s", 6, "2020-01-15", "a", "x", None, None, None),  # no content: never retrieved
])


def test_same_account_most_recent_before_the_date():
    r = Retriever(POOL)
    q = frame([("t", 1, "2020-04-01", "a", "x", None, None, None), ("t", 2, "2019-01-01", "a", "x", None, None, None)])
    assert r.texts(q) == ["a march", "a old"]  # the nearest after when none is before


def test_falls_back_to_brand_then_everything():
    r = Retriever(POOL)
    q = frame([("t", 1, "2020-05-01", "new", "x", None, None, None), ("t", 2, "2020-05-01", "new", "new", None, None, None)])
    assert r.texts(q) == ["a march", "a march"]


def test_a_row_never_retrieves_itself_and_k_results_are_distinct():
    r = Retriever(POOL)
    got = r.retrieve(POOL.iloc[[2]], k=3)[0]
    texts = [r.pool.at[i, "content"] for i in got]
    assert "a june" not in texts and len(set(texts)) == 3 and texts[:2] == ["a march", "a old"]


def test_caption_similarity_wins_where_both_sides_have_captions():
    pool = POOL.copy()
    pool.loc[pool["id"] == 1, "caption"] = "a red car"
    pool.loc[pool["id"] == 3, "caption"] = "a bowl of soup"
    vocab = {"a red car": [1, 0], "a bowl of soup": [0, 1], "soup in a bowl": [0.1, 0.99]}
    embed = lambda texts: np.array([vocab[t] for t in texts], np.float32)  # noqa: E731
    r = Retriever(pool, embed)
    q = frame([("t", 1, "2020-04-01", "a", "x", None, "soup in a bowl", None), ("t", 2, "2020-04-01", "a", "x", None, None, None)])
    assert r.texts(q) == ["a june", "a march"]
