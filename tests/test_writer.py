"""The tweet writer (tweetsim.writer): pools, consensus selection, the reranker, edits, the stage."""

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import yaml

from stages_helper import ROOT, override, stage, write_params
from tweetsim.lm.generate import GenConfig
from tweetsim.writer import edits as E, select as S, textsim
from tweetsim.writer.config import DraftConfig, WriterConfig
from tweetsim.writer.tweet_writer import TweetWriter
from tweetsim.writer.pools import SOURCES

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())["writer"]


def frame(rows):
    cols = ["source", "id", "date", "username", "company", "content", "caption", "likes", "n_photo", "n_video"]
    df = pd.DataFrame([r + (None,) * (len(cols) - len(r)) for r in rows], columns=cols)
    df["date"] = pd.to_datetime(df["date"], utc=True)
    return df


def params(**over) -> WriterConfig:
    """The repo's writer params; no `typical` candidates unless asked (pools below are asserted exactly)."""
    p = json.loads(json.dumps(PARAMS))
    return WriterConfig.from_params(override(p, {"pool.typical_k": 0, **over}))


POOL = frame([
    ("s", 1, "2020-01-01", "a", "x", "new shoes out now <hyperlink>"),
    ("s", 2, "2020-01-05", "a", "x", "our new shoes are out now <hyperlink>"),
    ("s", 3, "2020-01-09", "a", "x", "new shoes out today <hyperlink>"),
    ("s", 4, "2020-01-12", "a", "x", "happy holidays from all of us"),
    ("s", 5, "2020-01-20", "a", "x", "join the live stream tonight"),
    ("s", 6, "2020-02-01", "b", "x", "brand x news from another account"),
    ("s", 7, "2020-02-01", "c", "zeta", "Zeta phones are here, shop zeta now <mention>"),
    ("s", 8, "2020-02-02", "c", "zeta", "shop zeta phones now <hyperlink>"),
])


def test_textsim_components_match_hand_computed_values():
    space = textsim.TextSpace(["a b c", "a b d"])
    enc = space.encode(["a b c", "a b d", "x y"])
    sims = textsim.similarity(enc, enc)
    assert sims["unigram"][0, 1] == pytest.approx(2 * 2 / 6)      # {a,b} shared of 3 + 3
    assert sims["bigram"][0, 1] == pytest.approx(2 * 1 / 4)       # {a b} shared of 2 + 2
    assert sims["rougeL"][0, 1] == pytest.approx(2 * 2 / 6)       # LCS "a b"
    assert sims["rougeL"][0, 2] == 0 and sims["cider"][0, 2] == 0
    assert np.allclose(np.diag(sims["unigram"]), 1)
    # CIDEr-D averages n = 1..4: a 3-token text has no 4-gram, a 2-token one no 3- or 4-gram
    assert np.allclose(np.diag(sims["cider"]), [0.75, 0.75, 0.5])
    # vocabulary grown by a later encode: matrices are aligned, not broken
    late = space.encode(["a b c new words"])
    assert textsim.similarity(late, enc)["unigram"][0, 0] == pytest.approx(2 * 3 / 8)


def test_consensus_picks_the_tweet_most_like_the_others():
    w = TweetWriter(POOL, params(**{"match.recency_halflife_days": 1e9}))
    row = frame([("q", 1, "2020-03-01", "a", "x")])
    s = w.scored(row)[0]
    assert sorted(w.pool.table["id"].to_numpy()[s.pool_ix].tolist()) == [1, 2, 3, 4, 5, 6]
    assert s.texts[int(np.argmax(s.consensus))] == "new shoes out now <hyperlink>"
    assert s.features.shape == (6, len(S.FEATURES))
    assert origin_of(s, "brand x news from another account") == {"brand"}
    # with typical_k, the pool's most typical tweets join every pool, flagged as such
    s = TweetWriter(POOL, params(**{"pool.typical_k": 2})).scored(row)[0]
    assert s.flags[:, SOURCES.index("typical")].sum() == 2  # may be tweets the pool already had: flags merge


def origin_of(s, text):
    k = s.texts.index(text)
    return {SOURCES[j] for j in np.flatnonzero(s.flags[k])}


def test_never_the_row_itself_nor_its_future_when_past_only():
    w = TweetWriter(POOL, params())
    row = POOL[POOL["id"] == 3]
    s = w.scored(row, past_only=True)[0]
    ids = set(w.pool.table["id"].to_numpy()[s.pool_ix].tolist())
    assert ids == {1, 2}                          # not itself (3), nothing dated after 2020-01-09
    s = w.scored(row, past_only=False)[0]
    assert 3 not in set(w.pool.table["id"].to_numpy()[s.pool_ix].tolist())


def test_unseen_brand_pools_come_from_look_alike_brands_and_get_the_brand_name():
    w = TweetWriter(POOL, params(**{"pool.similar_brands": 1}), kept_edits=["brand"])
    # a video brand like zeta (both its known rows have a video); brand omega has no tweet in the pool
    ctx = POOL.assign(n_video=np.where(POOL["company"] == "zeta", 1, 0))
    w = TweetWriter(POOL, params(**{"pool.similar_brands": 1}), context=ctx, kept_edits=["brand"])
    row = frame([("q", 9, "2020-03-01", "omega_store", "omega", None, None, None, 0, 1)])
    s = w.scored(row)[0]
    assert {origin_of(s, t) == {"similar_brand"} for t in s.texts} == {True}
    assert set(w.pool.table["company"].to_numpy()[s.pool_ix]) == {"zeta"}
    out = w.write(row)
    assert "zeta" not in out["content"].iloc[0].lower() and "omega" in out["content"].iloc[0]
    # exclude_company: a training row of zeta sees no zeta tweet, as a held-out brand would
    s = w.scored(POOL[POOL["id"] == 8], exclude_company=True)[0]
    assert "zeta" not in set(w.pool.table["company"].to_numpy()[s.pool_ix])


def test_a_row_with_nothing_known_gets_the_widest_pool_and_an_empty_pool_is_an_error():
    w = TweetWriter(POOL, params(**{"pool.similar_brands": 0}))
    row = frame([("q", 1, None, None, None)])
    out = w.write(row)
    assert out["origin"].iloc[0] == "typical" and out["content"].iloc[0] in set(POOL["content"]) and out["widest"].iloc[0]
    assert not w.write(frame([("q", 2, "2020-03-01", "a", "x")]))["widest"].iloc[0]
    with pytest.raises(ValueError, match="no row with content"):
        TweetWriter(POOL.assign(content=None), params())


def test_edits():
    assert E.brand("Zeta phones: shop zeta now @zeta_store", "zeta", "zeta_store", "Omega", "omega") == \
        "Omega phones: shop Omega now @omega"
    assert E.brand("zetas and zeta", "zeta", None, "nike", None) == "zetas and nike"  # whole words only
    assert E.placeholders("hi", {"<hyperlink>": 0.9, "<mention>": 0.0}) == "hi <hyperlink>"
    assert E.placeholders("hi <mention> there", {"<hyperlink>": 0.5, "<mention>": 0.0}) == "hi there"
    assert E.placeholders("hi <mention>", None) == "hi <mention>"
    habits = E.account_habits(POOL)
    assert habits["a"]["<hyperlink>"] == pytest.approx(0.6) and habits["c"]["<mention>"] == pytest.approx(0.5)
    assert habits[E.POOL]["<hyperlink>"] == pytest.approx(4 / 8)  # the whole pool's, for accounts it does not know
    pool = {"<hyperlink>": 0.8, "<mention>": 0.0}
    assert E.apply("hi", ["pool_placeholders"], None, None, None, None, None, pool) == "hi <hyperlink>"
    assert E.apply("hi", ["pool_placeholders"], habits["a"], None, None, None, None, pool) == "hi"  # a known account: its own


@pytest.mark.parametrize("text", ["Join us this Friday, 3 May 2022! MONDAY madness in March <hyperlink>",
                                  "see you on sunday at the 2021 finals, since 1998", "nothing dated here"])
def test_dates_edit_keeps_each_word_at_its_distance_and_round_trips(text):
    """A Sunday 1 May 2022 candidate moved to Wednesday 14 June 2023 and back gives the text again."""
    there = E.dates(text, "2022-05-01", "2023-06-14")
    assert E.dates(there, "2023-06-14", "2022-05-01") == text
    assert E.apply(text, ["dates"], None, None, None, None, None, None, "2022-05-01", "2023-06-14") == there
    assert E.dates(text, None, "2023-06-14") == text and E.dates(text, "2022-05-01", pd.NaT) == text


def test_dates_edit_words():
    moved = E.dates("Join us this Friday, 3 May 2022! MONDAY madness in March. Since 1998, may I march on",
                    "2022-05-01", "2023-06-14")  # Friday is 5 days after the candidate's Sunday: a Monday after the row's Wednesday
    assert moved == "Join us this Monday, 3 June 2023! THURSDAY madness in April. Since 1998, may I march on"


def test_reranker_trains_on_a_tiny_fixture_and_reloads_with_identical_scores(tmp_path):
    p = params(**{"reranker.n_estimators": 20, "reranker.early_stopping_rounds": 5})
    w = TweetWriter(POOL, p)
    rows = POOL.iloc[:6]
    scored = w.scored(rows, truths=rows["content"].tolist())
    assert all(x.label is not None and len(x.label) == len(x.texts) for x in scored)
    w.reranker = S.train_reranker(scored, scored[:3], p.reranker)
    w.save(tmp_path / "w", {"note": "tiny"})
    again = TweetWriter.load(tmp_path / "w", POOL, p)
    for a, b in zip(w.ranking(scored), again.ranking(scored)):
        assert np.array_equal(a, b)
    assert json.loads((tmp_path / "w" / "writer.json").read_text())["features"] == S.FEATURES
    rule = dict(length_bonus=0.02, score_scale=0.5, consensus_mix=0.25, consensus_scale=2.0, typicality_weight=0.5,
                typicality_scale=3.0)
    for k, v in rule.items():
        setattr(w, k, v)
    w.save(tmp_path / "w", {"note": "tiny"})
    again = TweetWriter.load(tmp_path / "w", POOL, p)
    assert {k: getattr(again, k) for k in rule} == rule
    for a, b in zip(w.ranking(scored), again.ranking(scored)):
        assert np.array_equal(a, b)
    cons = TweetWriter.load(tmp_path / "w", POOL, p, selector="consensus")  # the rule was tuned for the reranker's scores
    assert cons.reranker is None and (cons.length_bonus, cons.score_scale, cons.consensus_mix) == (0.0, 1.0, 0.0)
    with pytest.raises(FileNotFoundError, match="select_text"):
        TweetWriter.load(tmp_path / "nothing", POOL, p)


def test_worst_gain_and_tune_take_the_rule_that_beats_the_baselines_most_evenly():
    from tweetsim.writer.tweet_writer import worst_gain

    retrieval, typical = {"bleu1": 0.2, "rougeL": 0.1, "cider": 0.1}, {"bleu1": 0.1, "rougeL": 0.2, "cider": 0.05}
    assert worst_gain({"bleu1": 0.3, "rougeL": 0.22, "cider": 0.1}, {"r": retrieval, "t": typical}) == pytest.approx(0.0)
    assert worst_gain({"bleu1": 0.3, "rougeL": 0.3, "cider": 0.2}, {"r": retrieval, "t": typical}) == pytest.approx(0.5)

    p = params(**{"reranker.n_estimators": 20, "reranker.early_stopping_rounds": 5})
    w = TweetWriter(POOL, p)
    rows = POOL.iloc[1:6]
    scored = w.scored(rows, truths=rows["content"].tolist())
    w.reranker = S.train_reranker(scored, scored, p.reranker)
    out = w.tune(rows, scored, w.base_scores(scored), {"consensus_mix": [0, 0.5], "typicality_weight": [0], "length_bonus": [0, 0.05]},
                 ["placeholders"],
                 {"retrieval": POOL["content"].iloc[:5].tolist(), "typical": [POOL["content"].iloc[0]] * 5})
    tried = out["rule"]["val"]
    assert len(tried) == 4
    best = max(tried.values(), key=lambda f: (f["resampled_worst_gain"], f["mean_gain"]))
    chosen = tried[f"consensus_mix={w.consensus_mix} typicality_weight=0.0 length_bonus={w.length_bonus}"]
    assert chosen == best and out["rule"]["chosen"] == {"consensus_mix": w.consensus_mix, "typicality_weight": 0.0,
                                                        "length_bonus": w.length_bonus}
    assert out["placeholders"]["kept"] == ("placeholders" in w.kept)


def test_rows_scored_in_groups_get_the_same_features_as_row_by_row():
    rows = frame([("q", i, f"2020-03-0{i}", u, c) for i, (u, c) in enumerate([("a", "x"), ("c", "zeta"), ("a", "x"),
                                                                              ("b", "x"), ("a", "x"), (None, None)], 1)])
    one, grouped = (TweetWriter(POOL, params(share_pools=k, **{"pool.typical_k": 2})) for k in (0, 1.25))
    groups = S.share_pools(rows.to_dict("records"), [{"date": d} for d in pd.to_datetime(rows["date"]).astype("int64")],
                           [np.arange(5), np.arange(10, 15), np.arange(5), np.arange(20, 25), np.arange(30, 40), np.arange(5)],
                           1.25, [False] * 6)
    # in account and date order, a group grows while its union of candidates stays within 1.25x its largest pool
    assert sorted(map(sorted, groups)) == [[0, 2], [1], [3], [4], [5]]
    for a, b in zip(one.scored(rows, truths=["new shoes"] * 6), grouped.scored(rows, truths=["new shoes"] * 6)):
        assert a.texts == b.texts and np.array_equal(a.features, b.features, equal_nan=True)
        assert np.array_equal(a.label, b.label)


def test_rows_scored_by_forked_workers_are_the_same_in_the_same_order(monkeypatch):
    rows = frame([("q", i, f"2020-03-0{i % 9 + 1}", u, c) for i, (u, c) in enumerate(
        [("a", "x"), ("c", "zeta"), ("a", "x"), ("b", "x"), ("a", "x"), (None, None)] * 3)])
    monkeypatch.setattr(S, "CHUNK_ROWS", 2)  # several chunks from 18 rows
    one, two = (TweetWriter(POOL, params(workers=k, **{"pool.typical_k": 2})) for k in (1, 2))
    truths = ["new shoes"] * len(rows)
    for a, b in zip(one.scored(rows, truths=truths), two.scored(rows, truths=truths), strict=True):
        assert a.texts == b.texts and np.array_equal(a.pool_ix, b.pool_ix) and np.array_equal(a.flags, b.flags)
        assert np.array_equal(a.features, b.features, equal_nan=True) and np.array_equal(a.consensus, b.consensus)
        assert np.array_equal(a.label, b.label)


def test_drafts_are_distinct_and_best_first():
    w = TweetWriter(POOL, params())
    d = w.drafts(frame([("q", 1, "2020-03-01", "a", "x")]), 3)
    assert len(d) == 3 and len({t for t, _ in d}) == 3
    assert d[0][0] == w.write(frame([("q", 1, "2020-03-01", "a", "x")]))["content"].iloc[0]


@pytest.mark.slow  # the stage end to end
def test_select_text_stage(tmp_path, sample_table):
    from tweetsim.data.schema import write_tweets
    from tweetsim.data.splits import SplitConfig, assign

    t = sample_table
    table = t[t["company"].isin(sorted(t.loc[t["content"].notna(), "company"].unique())[:12])].reset_index(drop=True)
    data = tmp_path / "data"
    data.mkdir()
    write_tweets(table, data / "tweets.parquet")
    path = write_params(tmp_path, **{"writer.caption_similarity": False, "writer.reranker.n_estimators": 10,
                                     "writer.reranker.max_train_queries": 200, "baselines.caption_similarity": False})
    p = yaml.safe_load(path.read_text())
    assign(table, SplitConfig.from_params(p["split"])).to_parquet(data / "splits.parquet", index=False)
    stage("baselines").main(str(path), str(data))  # retrieval: what the choice rule is tuned against on val
    stage("select_text").main(str(path), str(data), str(tmp_path / "models"), str(tmp_path / "metrics"))
    splits = pd.read_parquet(data / "splits.parquet").merge(table[["source", "id", "content"]], on=["source", "id"])
    for name in ("consensus", "reranked", "oracle", "typical"):
        pred = pd.read_parquet(data / "predictions" / "text" / f"{name}.parquet")
        for regime in p["split"]["regimes"]:
            want = splits[splits[regime].isin(["val", "test"]) & splits["content"].notna()]
            got = pred[pred["regime"] == regime]
            assert len(got) == len(want) and set(zip(got["source"], got["id"])) == set(zip(want["source"], want["id"]))
            assert got["pred_content"].str.len().gt(0).all()
    report = json.loads((tmp_path / "metrics" / "select_text.json").read_text())
    assert set(report) == set(p["split"]["regimes"])
    assert (tmp_path / "models" / "writer" / "unseen_time" / "reranker.json").is_file()


def test_lm_drafts_join_the_pool_as_candidates(tmp_path):
    """A tiny real Llama writes drafts: they enter the pool flagged `lm`, with their log-probability."""
    from test_app import _tiny_llama

    from tweetsim.writer.writers import Writer
    from tweetsim.writer.lm import Drafter

    full = yaml.safe_load((ROOT / "params.yaml").read_text())
    full["train_llm"]["model"]["name"] = str(_tiny_llama(tmp_path / "tiny", POOL["content"].tolist()))
    full["build_prompts"]["caption_similarity"] = False
    lm_p = DraftConfig(candidates=3, max_rows=4, temperature=0.8, top_p=0.95)
    drafter = Drafter(Writer(full, None, POOL), lm_p, replace(GenConfig.from_params(full["generate"]), max_new_tokens=6))
    w = TweetWriter(POOL, params(), lm=drafter)
    row = frame([("q", 1, "2020-03-01", "a", "x")])
    drafts = drafter(row)
    assert len(drafts) == 1 and 1 <= len(drafts[0]) <= 3 and all(np.isfinite(lp) and lp <= 0 for _, lp in drafts[0])
    s = w.scored(row, drafts=drafts)[0]
    lm_rows = s.flags[:, SOURCES.index("lm")]
    assert lm_rows.sum() == len(drafts[0]) and (s.pool_ix[lm_rows] == -1).all()
    lp = s.features[:, S.FEATURES.index("lm_logprob")]
    assert np.isfinite(lp[lm_rows]).all() and np.isnan(lp[~lm_rows]).all()
    assert len(w.write(row)) == 1  # write() asks the drafter itself


def test_generate_cli_with_missing_columns_and_an_unknown_brand(tmp_path, capsys):
    from tweetsim.apps.cli import main
    from tweetsim.data.schema import write_tweets

    pool = tmp_path / "tweets.parquet"
    write_tweets(POOL, pool)
    p = params(**{"reranker.n_estimators": 5, "caption_similarity": False})
    w = TweetWriter(POOL, p)
    scored = w.scored(POOL, truths=POOL["content"].tolist())
    w.reranker = S.train_reranker(scored, [], p.reranker)
    w.save(tmp_path / "writer", {})
    path = write_params(tmp_path, **{"writer.caption_similarity": False})
    src = tmp_path / "in.csv"  # no date, no likes, no media, no username; one unknown brand, one row with nothing
    pd.DataFrame({"id": [5, 6, 7], "inferred company": ["omega", "x", None]}).to_csv(src, index=False)
    out = tmp_path / "out.csv"
    args = ["generate", "--input", str(src), "--output", str(out), "--params", str(path), "--pool", str(pool),
            "--writer-dir", str(tmp_path / "writer")]
    assert main(args) == 0
    got = pd.read_csv(out, keep_default_na=False)
    assert got["id"].tolist() == [5, 6, 7] and (got["content"] != "").all()
    msg = capsys.readouterr().out
    assert "rows without account / brand / date: 3 / 1 / 3" in msg and "3 rows: 0 ok, 3 partial" in msg  # columns it lacks: named
    # the rows without an account or brand draw on look-alike brands, found from their own metadata
    assert "0 written from the widest pool" in msg
    # an empty pool is a clear error naming the pool file
    empty = tmp_path / "empty.parquet"
    write_tweets(POOL.assign(content=None), empty)
    assert main(args[:-4] + ["--pool", str(empty), "--writer-dir", str(tmp_path / "writer"), "--output", str(tmp_path / "o2.csv")]) == 2
    assert f"the writer's pool {empty} has no row with content" in capsys.readouterr().err


def test_reranker_early_stops_on_a_seeded_draw_of_max_val_queries_rows(caplog):
    caplog.set_level("INFO", logger=S.logger.name)
    rows = POOL.iloc[:8]
    w = TweetWriter(POOL, params(**{"pool.typical_k": 3}))
    scored = [s for s in w.scored(rows, truths=rows["content"].tolist()) if len(s.texts) > 1]
    assert len(scored) > 3

    def booster(val, cap):
        p = params(**{"reranker.n_estimators": 30, "reranker.early_stopping_rounds": 3, "reranker.max_val_queries": cap})
        b = S.train_reranker(scored, val, p.reranker)
        return b.attr("best_iteration"), np.concatenate(S.rerank_scores(b, scored))

    drawn = [scored[i] for i in np.sort(np.random.default_rng(PARAMS["reranker"]["seed"]).choice(len(scored), 2, replace=False))]
    capped = booster(scored, 2)
    assert f"{len(scored)} training pools" in caplog.text and ", 2 val pools" in caplog.text
    explicit = booster(drawn, None)
    assert capped[0] == explicit[0] and np.array_equal(capped[1], explicit[1])
    assert np.array_equal(booster(scored, len(scored))[1], booster(scored, None)[1])  # a cap the rows fit in changes nothing


def test_no_candidate_or_extra_feature_from_the_row_itself_or_its_future_under_every_cut_off():
    p = params(**{"reranker.feature_groups": list(S.EXTRA)})
    pool = POOL.assign(caption=["shoes on a shelf", None, "a shoe", None, "a stage", None, "a phone", "a phone box"],
                       likes=[10, 20, 30, 40, 50, 60, 70, 80])
    full = TweetWriter(pool, p)
    for cut in range(1, len(pool)):   # each pool tweet in turn is the row: a cut-off at its date
        row = pool.iloc[[cut]]
        s = full.scored(row, past_only=True)[0]
        dates = full.pool.table["date"].to_numpy()[s.pool_ix]
        assert (dates < row["date"].to_numpy()[0]).all() and row["id"].iloc[0] not in full.pool.table["id"].to_numpy()[s.pool_ix]
        # the same row against a pool that never held its future or itself: the same candidates, the same features
        past = pool[pool["date"] < row["date"].iloc[0]]
        if past.empty:
            continue
        alone = TweetWriter(past, p).scored(row, past_only=True)[0]
        assert s.texts == alone.texts
        extra = slice(len(S.FEATURES), None)
        assert s.features.shape[1] == len(full.selector.feature_names) > len(S.FEATURES)
        assert np.array_equal(s.features[:, extra], alone.features[:, extra], equal_nan=True)


def test_extra_feature_groups_measure_what_they_say():
    p = params(**{"reranker.feature_groups": ["time", "campaign", "media_text", "reply"]})
    w = TweetWriter(POOL.assign(caption=[None] * 7 + ["shop zeta phones"]), p)
    row = frame([("q", 1, "2020-01-21", "a", "x", None, "new shoes on a shelf")])
    s = w.scored(row, past_only=True)[0]
    f = dict(zip(w.selector.feature_names, s.features.T))
    newest = s.texts.index("join the live stream tonight")   # 2020-01-20, a day before the row
    assert f["days_to_newest"][newest] == 0 and f["signed_log_days"][newest] == pytest.approx(np.log1p(1))
    # the row's media words ("new shoes ...") are those of the shoe tweets, not the live stream's
    shoes = s.texts.index("new shoes out now <hyperlink>")
    assert f["row_media_unigram"][shoes] > f["row_media_unigram"][newest] == 0
    assert set(f["starts_mention"]) == {0.0}


def test_look_alike_brands_of_a_club_are_clubs():
    rows = []
    for i, (company, user, caption, video) in enumerate([
            ("fc barcelona", "FCBarcelona", "soccer players celebrate a goal on the pitch", 0),
            ("liverpool fc", "LFC", "a football player on the pitch in a red kit", 0),
            ("amc", "AMCTheatres", "a movie poster", 1), ("british museum", "britishmuseum", "a statue in a museum hall", 1),
            ("amc", "AMCTheatres", "popcorn at the movies", 1), ("british museum", "britishmuseum", "an old vase", 1)]):
        rows.append(("s", i, f"2020-01-0{i + 1}", user, company, f"tweet {i} of {company}", caption, None, 0, video))
    pool = frame(rows)
    club = frame([("q", 1, "2020-02-01", "OmegaFC", "omega fc", None, "a soccer player with the ball on the pitch", None, 0, 1)])
    context = pd.concat([pool, club], ignore_index=True)
    by_words = TweetWriter(pool, params(**{"pool.similar_brands": 2, "pool.similar_text_weight": 0.8}), context=context)
    s = by_words.scored(club)[0]
    assert set(by_words.pool.table["company"].to_numpy()[s.pool_ix]) == {"fc barcelona", "liverpool fc"}
    # by the media mix alone (a video account, like the cinema and the museum) they are not
    by_media = TweetWriter(pool, params(**{"pool.similar_brands": 2, "pool.similar_text_weight": 0.0}), context=context)
    s = by_media.scored(club)[0]
    assert set(by_media.pool.table["company"].to_numpy()[s.pool_ix]) == {"amc", "british museum"}


def test_edit_effects_toggle_one_edit_against_the_served_choice():
    """A kept edit's gain is what removing it loses; another's is what adding it would give."""
    from tweetsim.text.metrics import target_figures

    w = TweetWriter(POOL, params())
    rows = POOL.iloc[:6]
    scored = w.scored(rows, truths=rows["content"].tolist())
    base = w.base_scores(scored)
    w.kept = ["placeholders"]
    got = w.edit_effects(rows, scored, base, ["placeholders", "brand"])
    picks = S.choose(scored, w.ranking(scored, base))
    served, without, with_brand = target_figures(rows["content"].tolist(), [
        S.edited(w.pool, rows, scored, picks, kept, w.habits) for kept in (["placeholders"], [], ["placeholders", "brand"])])
    assert got["placeholders"]["kept"] and not got["brand"]["kept"]
    for m in ("bleu1", "rougeL", "cider"):
        assert got["placeholders"]["gain"][m] == pytest.approx(served[m] - without[m])
        assert got["brand"]["gain"][m] == pytest.approx(with_brand[m] - served[m])
    assert w.edit_effects(rows.iloc[:0], [], [], ["brand"]) == {}
