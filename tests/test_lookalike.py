"""Look-alike brands (tweetsim/likes/lookalike.py): a planted brand level is recovered for a row of an
unknown brand, a training row never reads its own brand, and a reload gives the same features."""

import numpy as np
import pandas as pd
import pytest

from tweetsim.likes.lookalike import LookAlike

TOPICS = {"cars": ("engine wheel motor drive road", 2.0), "films": ("movie trailer cinema premiere actor", 5.0),
          "banks": ("loan credit savings account interest", 8.0)}


def _rows(seed: int = 0) -> pd.DataFrame:
    """Three brands per topic, 20 rows each; a brand's log1p likes sit at its topic's level (+ noise)."""
    rng = np.random.default_rng(seed)
    out = []
    for topic, (words, level) in TOPICS.items():
        for b in range(3):
            for i in range(20):
                text = " ".join(rng.choice(words.split(), 4)) + f" post{i}"
                out.append({"content": text, "company": f"{topic}{b}", "username": f"{topic.title()}Brand{b}",
                            "n_photo": float(i % 2), "n_video": 0.0, "n_gif": 0.0,
                            "likes": float(np.expm1(level + rng.normal(0, 0.3)))})
    return pd.DataFrame(out)


def test_planted_brand_level_is_recovered_for_an_unknown_brand():
    rows = _rows()
    la = LookAlike(k=3, shrink=1.0, max_words=1000).fit(rows, rows["company"], rows["likes"])
    new = pd.DataFrame({"content": ["new movie trailer premiere tonight", "best loan credit rates", "engine and wheel news"],
                        "company": "never-seen", "username": "SomeoneNew"})
    got = la.features(new)["lookalike_level"].to_numpy()
    assert got == pytest.approx([5.0, 8.0, 2.0], abs=0.3)
    assert (la.features(new)["lookalike_sim"] > 0).all()
    # the level of each row comes from that row alone: the same in any file order
    assert np.array_equal(la.features(new.iloc[::-1])["lookalike_level"].to_numpy()[::-1], got)


def test_training_rows_never_read_their_own_brand():
    rows = _rows()
    brands = rows["company"].to_numpy()
    la = LookAlike(k=3, shrink=1.0, max_words=1000).fit(rows, brands, rows["likes"])
    own = la.features(rows, brands)
    # the films0 rows' own likes moved far away: their feature does not move, the other brands' does
    moved = rows.assign(likes=np.where(brands == "films0", 1e9, rows["likes"]))
    la2 = LookAlike(k=3, shrink=1.0, max_words=1000).fit(moved, brands, moved["likes"])
    own2 = la2.features(moved, brands)
    mine = brands == "films0"
    assert np.array_equal(own2.loc[mine].to_numpy(), own.loc[mine].to_numpy())
    assert (own2.loc[brands == "films1", "lookalike_level"] > own.loc[brands == "films1", "lookalike_level"] + 1).all()
    # left out, a brand's rows still find their topic's other brands
    assert own.loc[mine, "lookalike_level"].to_numpy() == pytest.approx(5.0, abs=0.5)
    # a brand fitted on no row is no look-alike: only the fitted rows' brands are profiled
    part = rows[rows["company"] != "banks2"]
    assert "banks2" not in LookAlike(3, 1.0, 1000).fit(part, part["company"], part["likes"]).brands


def test_reload_gives_identical_features(tmp_path):
    rows = _rows(1)
    la = LookAlike(k=4, shrink=5.0, max_words=50).fit(rows, rows["company"], rows["likes"])
    la.save(tmp_path / "la")
    again = LookAlike.load(tmp_path / "la")
    new = _rows(2).head(30)
    pd.testing.assert_frame_equal(again.features(new), la.features(new))
    pd.testing.assert_frame_equal(again.features(new, new["company"].to_numpy()), la.features(new, new["company"].to_numpy()))
