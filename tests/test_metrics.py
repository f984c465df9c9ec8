"""Metrics against values computed by hand."""

import json
import math

import numpy as np
import pytest

from tweetsim.likes.metrics import likes_metrics
from tweetsim.text.metrics import text_metrics, to_json_safe, tokenize

# ---------------------------------------------------------------- likes


def test_rmse_mae_by_hand():
    m = likes_metrics([0, 10], [0, 0], train_median=5)
    assert m["rmse"] == pytest.approx(math.sqrt(50))  # sqrt((0 + 100) / 2)
    assert m["mae"] == pytest.approx(5.0)  # (0 + 10) / 2
    assert m["n"] == 2


def test_rmse_log1p_by_hand():
    # log1p(truth) = [0, 1], log1p(pred) = [2, 1]: errors [2, 0] -> sqrt(4 / 2)
    m = likes_metrics([0, math.e - 1], [math.e**2 - 1, math.e - 1], train_median=1)
    assert m["rmse_log1p"] == pytest.approx(math.sqrt(2))


def test_negative_prediction_clipped_for_log1p_only():
    m = likes_metrics([0, 3], [-5, 3], train_median=1)
    assert m["rmse_log1p"] == pytest.approx(0.0)  # -5 counts as 0 likes
    assert m["rmse"] == pytest.approx(math.sqrt(25 / 2))  # raw prediction


def test_spearman_monotone_reversed_constant():
    t = [1, 2, 3, 4]
    assert likes_metrics(t, [10, 20, 30, 1000], 2)["spearman"] == pytest.approx(1.0)
    assert likes_metrics(t, [9, 5, 2, 0], 2)["spearman"] == pytest.approx(-1.0)
    assert likes_metrics(t, [7, 7, 7, 7], 2)["spearman"] is None  # undefined, not 0


def test_high_low_accuracy_uses_train_median():
    # train median 10; a value equal to the median is low.
    # truth high?  F  T  F  T
    # pred  high?  F  T  T  F   -> agree on 2 of 4
    m = likes_metrics([5, 15, 10, 20], [8, 12, 11, 3], train_median=10)
    assert m["high_low_accuracy"] == pytest.approx(0.5)
    # the same rows split at 2 instead: truth all high, preds 8,12,11 high and 3 high -> 4 of 4
    assert likes_metrics([5, 15, 10, 20], [8, 12, 11, 3], train_median=2)["high_low_accuracy"] == 1.0


@pytest.mark.parametrize("t,p,msg", [
    ([1, 2], [1], "y_true has 2 values but y_pred has 1"),
    ([1, float("nan")], [1, 2], "y_true has 1 NaN"),
    ([1, 2], [1, float("nan")], "y_pred has 1 NaN"),
    ([1, -2], [1, 2], "negative"),
    ([], [], "no rows"),
])
def test_likes_bad_input_raises(t, p, msg):
    with pytest.raises(ValueError, match=msg):
        likes_metrics(t, p, train_median=1)


# ---------------------------------------------------------------- tokenizer


def test_tokenizer_keeps_placeholders_tags_handles_emoji():
    toks = tokenize("Wow!! <hyperlink> #TGIF @Adobe don't ♥️➡️<mention> &amp; café")
    assert toks == ["wow", "!", "!", "<hyperlink>", "#tgif", "@adobe", "don't", "♥️", "➡️", "<mention>", "&", "café"]
    assert tokenize(None) == [] and tokenize("") == []


# ---------------------------------------------------------------- text


def test_identical_text_scores_one_and_embedding_cosine_one():
    refs = ["New drop today <hyperlink> #sale", "Thanks <mention> for the great work on the launch!"]
    m = text_metrics(refs, list(refs))  # real MiniLM, three distinct sentences in all
    for k in ("bleu1", "bleu2", "bleu3", "bleu4", "rouge1", "rouge2", "rougeL"):
        assert m[k] == pytest.approx(1.0), k
    assert m["embedding_cosine"] == pytest.approx(1.0, abs=1e-5)
    assert m["n"] == 2


def test_disjoint_text_scores_zero():
    m = text_metrics(["the cat sat on the mat", "big sale now"], ["dogs run fast", "quiet evening here"], embed=False)
    for k in ("bleu1", "bleu2", "bleu3", "bleu4", "rouge1", "rouge2", "rougeL", "cider"):
        assert m[k] == pytest.approx(0.0, abs=1e-9), k
    assert m["embedding_cosine"] is None


def test_bleu1_rouge_by_hand():
    # ref  "the cat sat on the mat" (6 tokens), hyp "the cat the dog" (4 tokens)
    # clipped unigram matches: the 2 (ref has 2), cat 1, dog 0 -> 3; precision 3/4, recall 3/6
    # BLEU-1 = 3/4 * brevity penalty exp(1 - 6/4)
    # ROUGE-1 F = 2 * 0.75 * 0.5 / 1.25 = 0.6; LCS "the cat the" = 3 tokens, so ROUGE-L = 0.6 too
    # bigrams: hyp (the cat)(cat the)(the dog), ref has only (the cat) -> ROUGE-2 P 1/3, R 1/5 -> F 0.25
    m = text_metrics(["the cat sat on the mat"], ["the cat the dog"], embed=False)
    assert m["bleu1"] == pytest.approx(0.75 * math.exp(-0.5), rel=1e-6)
    assert m["rouge1"] == pytest.approx(0.6)
    assert m["rougeL"] == pytest.approx(0.6)
    assert m["rouge2"] == pytest.approx(0.25)


def test_cider_identical_beats_disjoint():
    refs = ["new phone out today", "summer sale starts now <hyperlink>", "thank you <mention> for coming"]
    same = text_metrics(refs, list(refs), embed=False)["cider"]
    disjoint = text_metrics(refs, ["rainy evening", "quiet dogs bark", "blue skies ahead"], embed=False)["cider"]
    # every n-gram is in one reference of three (idf log 3 > 0), cosine 1, no length penalty, x10
    assert same == pytest.approx(10.0)
    assert disjoint == pytest.approx(0.0)


def test_empty_hypothesis_scores_zero_and_custom_encoder_is_used():
    calls = []

    def fake_encode(texts):
        calls.append(list(texts))
        return np.ones((len(texts), 4)) / 2.0  # unit vectors, all alike -> cosine 1

    refs = ["hello world <hyperlink>", "another tweet here"]
    m = text_metrics(refs, ["hello world <hyperlink>", ""], encode=fake_encode)
    assert m["embedding_cosine"] == pytest.approx(0.5)  # (1 + 0) / 2: the empty one scores 0
    assert m["rouge1"] == pytest.approx(0.5)
    assert "" not in calls[0]  # the empty hypothesis is never encoded
    allempty = text_metrics(refs, ["", None], encode=fake_encode)
    for k in ("bleu1", "bleu4", "rouge1", "rougeL", "cider", "embedding_cosine"):
        assert allempty[k] == pytest.approx(0.0, abs=1e-9), k


def test_text_bad_input_raises():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        text_metrics(["a", "b"], ["a"], embed=False)
    with pytest.raises(ValueError, match="reference 1"):
        text_metrics(["a", None], ["a", "b"], embed=False)


# ---------------------------------------------------------------- json


def test_to_json_safe_rounds_and_nulls():
    d = {"r": {"m": {"a": 1 / 3, "b": float("nan"), "c": np.float32(2.5), "n": np.int64(7), "s": None,
                     "z": -1e-9, "l": [float("inf"), 0.1234567]}}}
    out = to_json_safe(d)
    assert out == {"r": {"m": {"a": 0.333333, "b": None, "c": 2.5, "n": 7, "s": None, "z": 0.0,
                               "l": [None, 0.123457]}}}
    assert json.loads(json.dumps(out, allow_nan=False)) == out
    assert json.dumps(out["r"]["m"]["z"]) == "0.0"


def test_target_figures_equal_text_metrics_for_every_list():
    from tweetsim.text.metrics import target_figures

    refs = ["new shoes out now <hyperlink>", "happy holidays from all of us", "join the live stream tonight",
            "shop zeta phones now", "brand x news", "the live stream is on"]
    lists = [["new shoes <hyperlink>", "happy holidays", "", "zeta phones now", "news", "the stream"],
             ["new shoes <hyperlink>", "join us tonight for the live stream", "join the live stream", "shop now", "brand x", "on"],
             [None, "happy holidays from all of us", "tonight", "shop zeta phones now", "brand x news", "live"]]
    for got, hyps in zip(target_figures(refs, lists), lists):
        want = text_metrics(refs, hyps, embed=False)
        for k in ("bleu1", "rougeL", "cider"):
            assert got[k] == pytest.approx(want[k], rel=1e-9, abs=1e-12), k


def _libraries_text_metrics(refs, hyps):
    """text_metrics' n-gram scores straight from the libraries, one call each: the reference."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from rouge_score import rouge_scorer

    from tweetsim.text.metrics import _Tokenizer, tokenize

    gts = {i: [" ".join(tokenize(r))] for i, r in enumerate(refs)}
    res = {i: [" ".join(tokenize(h))] for i, h in enumerate(hyps)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=_Tokenizer())
    rouge = {k: 0.0 for k in ("rouge1", "rouge2", "rougeL")}
    for r, h in zip(refs, hyps):
        if h is not None:
            s = scorer.score(r, str(h))
            for k in rouge:
                rouge[k] += s[k].fmeasure
    return {**{f"bleu{k + 1}": float(bleu[k]) for k in range(4)}, **{k: v / len(refs) for k, v in rouge.items()},
            "cider": float(cider), "n": len(refs)}


def test_corpus_scorer_is_the_libraries_to_the_bit_for_every_writer():
    from tweetsim.text.metrics import CorpusScorer

    rng = np.random.default_rng(2)
    words = ["new", "shoes", "sale", "<hyperlink>", "live", "stream", "tonight", "zeta", "phones", "happy", "🎉", "#ad", "&amp;"]
    sent = lambda lo: " ".join(rng.choice(words, rng.integers(lo, 14)))  # noqa: E731
    refs = [sent(1) for _ in range(200)]
    writers = [[sent(0) for _ in refs] for _ in range(3)]
    writers.append([w if k % 3 else r for k, (w, r) in enumerate(zip(writers[0], refs))])  # shares texts with writer 0
    writers.append([None if k % 7 == 0 else "" if k % 7 == 1 else w for k, w in enumerate(writers[1])])
    scorer = CorpusScorer(refs)
    for hyps in writers:  # one scorer, its cache warm from the writers before
        got = scorer.figures([scorer.pair(i, h) for i, h in enumerate(hyps)])
        assert got == _libraries_text_metrics(refs, hyps)  # equal, not close
        assert {k: v for k, v in text_metrics(refs, hyps, embed=False).items() if k != "embedding_cosine"} == got


def test_cider_d_per_row_is_pycocoevalcaps_to_the_bit():
    from pycocoevalcap.cider.cider import Cider

    from tweetsim.text.metrics import TargetScorer, tokenize

    rng = np.random.default_rng(1)
    words = ["new", "shoes", "sale", "<hyperlink>", "live", "stream", "tonight", "zeta", "phones", "happy", "🎉", "#ad"]
    sent = lambda lo: " ".join(rng.choice(words, rng.integers(lo, 12)))  # noqa: E731
    refs = [sent(1) for _ in range(300)]
    hyps = [r if k % 4 == 0 else "" if k % 9 == 1 else sent(0) for k, r in enumerate(refs)]  # exact, empty, other
    tok = lambda t: [" ".join(tokenize(t))]  # noqa: E731
    _, want = Cider().compute_score({i: tok(r) for i, r in enumerate(refs)}, {i: tok(h) for i, h in enumerate(hyps)})
    target = TargetScorer(refs)
    got = target.figures([hyps], per_row=True)[0]["rows"]["cider"]
    assert got.tolist() == want.tolist()  # equal, not close: tuning breaks ties on these
    assert target.figures([hyps])[0]["cider"] == float(np.mean(want))  # a second call, from the cache


def test_evaluate_scores_texts_the_same_in_forked_workers():
    from stages_helper import stage

    ev = stage("evaluate")
    rng = np.random.default_rng(0)
    words = ["new", "shoes", "sale", "<hyperlink>", "live", "stream", "tonight", "zeta", "phones", "happy"]
    sent = lambda: " ".join(rng.choice(words, rng.integers(0, 7)))  # noqa: E731
    refs = [sent() or "x" for _ in range(40)]
    jobs = {r: {"all_rows": {m: (refs, [sent() for _ in refs]) for m in ("a", "b", "c")}, "shared_rows": {}}
            for r in ("time", "account")}

    def encode(texts):  # a deterministic stand-in: unit vectors from each text's token counts
        v = np.array([[t.split().count(w) + 1.0 for w in words] for t in texts])
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    one, two = ev._score_texts(jobs, encode, 1), ev._score_texts(jobs, encode, 2)
    assert one == two and set(one["time"]) == {"all_rows", "shared_rows"} and one["time"]["shared_rows"] == {}
    assert one["account"]["all_rows"]["b"] == text_metrics(*jobs["account"]["all_rows"]["b"], encode=encode)
