"""consensus_recent, the strong text baseline: the account's most central recent tweet, from earlier
tweets only, never the row itself."""

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from tweetsim.text.consensus import ConsensusRecent, most_central


def _pool():
    d = pd.to_datetime(["2021-01-01", "2021-01-02", "2021-01-03", "2021-01-04", "2021-01-05", "2021-01-06"], utc=True)
    return pd.DataFrame({"source": "s", "id": [1, 2, 3, 4, 5, 6], "date": d,
                         "username": ["a", "a", "a", "a", "b", "a"], "company": ["x", "x", "x", "x", "x", "x"],
                         "content": ["match tonight", "big match tonight", "cat pictures", "big match tonight stadium tickets",
                                     "brand b news", "big match tonight"]})


def test_most_central_on_known_vectors():
    v = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    assert most_central(v) == 1  # the middle vector is closest to both others
    assert most_central(sparse.csr_matrix(v)) == 1
    assert most_central(v[:1]) == 0
    assert most_central(np.array([[1.0, 0.0], [1.0, 0.0]])) == 1  # a tie goes to the latest


def test_picks_the_central_earlier_tweet_of_the_account():
    c = ConsensusRecent(_pool(), n=100)
    row = pd.DataFrame({"source": ["q"], "id": [9], "date": pd.to_datetime(["2021-01-05 12:00"], utc=True),
                        "username": ["a"], "company": ["x"]})
    assert c.texts(row) == ["big match tonight"]  # between the other two match tweets; never the cat, nor id 6 (later)
    assert c.pick(next(row.itertuples())) == 1
    # the window: the last 2 earlier tweets of the account only
    assert ConsensusRecent(_pool(), n=2).candidates(next(row.itertuples())).tolist() == [2, 3]


def test_never_the_row_itself_nor_its_future():
    c = ConsensusRecent(_pool(), n=100)
    for r in _pool().itertuples():
        cand = c.candidates(r)
        assert (r.source, r.id) not in set(zip(c.pool["source"][cand], c.pool["id"][cand]))
        later = c.dates[cand] >= np.datetime64(r.date.tz_convert(None))
        assert not later.any() or r.id == 1  # the first tweet has nothing earlier: the pool's first N
    # no earlier tweet of the account: the brand's; of neither: the pool's
    new = pd.DataFrame({"source": ["q", "q"], "id": [1, 2], "date": pd.to_datetime(["2021-01-06", "2021-01-06"], utc=True),
                        "username": ["zz", "zz"], "company": ["x", "nope"]})
    rows = list(new.itertuples())
    assert set(c.pool["username"][c.candidates(rows[0])]) == {"a", "b"}
    assert len(c.candidates(rows[1])) == 5
    with pytest.raises(ValueError, match="at least 1"):
        ConsensusRecent(_pool(), n=0)
