"""The result tables of the README and docs/, rendered from evaluate's metrics files.

Each table sits between `<!-- table:NAME -->` and `<!-- /table -->`; `render_tables` and `render_files`
fill every block from the sample's metrics (TABLES) and from those of the run on all the shared data
(FULL_TABLES, results/full/); scripts/readme_tables.py writes or checks them. The headline table is
read from the same headline dict evaluate writes (pipeline/report.py).
"""

import json
import logging
import re
from pathlib import Path
from typing import Callable

from tweetsim.pipeline.report import (LIKES_FIGURES, MIXED, STRONG_TEXT_BASELINE, TEXT_BASELINE, TEXT_FIGURES, TYPICAL,
                                      ReportParams, headline, served_models)

log = logging.getLogger(__name__)

SAMPLE, FULL = "sample", "all shared data"  # the `data` column of the tables that have one

def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _likes_cell(s: dict, bold: bool) -> str:
    head = f"**{_f(s['rmse_log1p'])}**" if bold else _f(s["rmse_log1p"])
    rest = [s["high_low_accuracy"]] + ([s["spearman"]] if s.get("spearman") is not None else [])
    return " / ".join([head] + [_f(x) for x in rest])


def headline_table(params: dict, m: dict) -> str:
    """One table of the served products per regime: the served likes (the router) against the better
    median baseline, and the served writer against retrieval and consensus_recent. Read from the same
    headline dict evaluate writes to metrics/headline.json."""
    h = headline(params, m["likes"], m["text"])
    text = served_models(params)["text"]
    rows = ["| regime | likes: served (router) | likes: best median baseline | "
            f"tweets: {text} (served) | tweets: retrieval | tweets: {STRONG_TEXT_BASELINE} |", "|---" * 6 + "|"]
    for regime in ReportParams.from_params(params).regimes:
        b = h[regime]
        base = min((b["likes_median"], b["likes_account_median"]), key=lambda s: s["rmse_log1p"])
        likes = [" / ".join(_f(s[f]) for f in LIKES_FIGURES) for s in (b["likes_served"], base)]
        text_cells = [_text_cell(b[k]) for k in ("text_served", f"text_{TEXT_BASELINE}", f"text_{STRONG_TEXT_BASELINE}")]
        rows.append(f"| {regime} | " + " | ".join(likes + text_cells) + " |")
    if MIXED in h:
        mixed = " / ".join(_f(h[MIXED]["likes_served"][f]) for f in LIKES_FIGURES)
        rows.append(f"| all three ({MIXED}) | {mixed} | - | - | - | - |")
    return "\n".join(rows)


def likes_sample_table(params: dict, m: dict) -> str:
    """regime | constant median | account median | served (the router's backtest) | the regime's own model:
    log1p-RMSE / high-low accuracy [/ Spearman]; the row's lowest log1p-RMSE in bold."""
    s = served_models(params)
    cols = [("constant median", "median"), ("account median", "account_median"), ("served (router)", s["likes"]),
            (f"regime's own model ({s['likes_regime']})", s["likes_regime"])]
    rows = ["| regime | " + " | ".join(h for h, _ in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for regime in ReportParams.from_params(params).regimes:
        r = m["likes"][regime]
        best = min(r[n]["rmse_log1p"] for _, n in cols)
        cells = []
        for _, n in cols:
            same_as_constant = n == "account_median" and all(r[n][f] == r["median"][f] for f in LIKES_FIGURES)
            # the unseen-brand regime has no account history: the account median falls back to the constant
            cells.append("(= constant)" if same_as_constant else _likes_cell(r[n], r[n]["rmse_log1p"] == best))
        rows.append(f"| {regime} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def intervals_sample_table(params: dict, m: dict) -> str:
    """The served likes model's conformal range on the test rows, by route: coverage and median width."""
    served = served_models(params)["likes"]
    rows = ["| regime | route | test rows | log1p-RMSE / high-low | test coverage (nominal) | median width (1 + high) / (1 + low) |",
            "|---|---|---|---|---|---|"]
    for regime in [*ReportParams.from_params(params).regimes, MIXED]:
        s = m["likes"][regime][served]
        for route, r in [("all", s), *sorted(s.get("routes", {}).items())]:
            rows.append(f"| {regime} | {route} | {r['n']:,} | {_f(r['rmse_log1p'])} / {_f(r['high_low_accuracy'])} "
                        f"| {_f(r['interval_coverage'])} ({s['interval_nominal']:.2f}) | x{r['interval_width_ratio_median']:.1f} |")
    return "\n".join(rows)


def _text_cell(s: dict, figures=TEXT_FIGURES) -> str:
    return " / ".join(_f(s[f]) for f in figures)


def text_sample_table(params: dict, m: dict, data: str = SAMPLE) -> str:
    """data | regime (rows) | every writer that wrote every test row | the served writer against the
    target's baseline (retrieval; the better of retrieval and typical, figure by figure, in
    writer.typical_baseline_regimes) | and against the strong baseline consensus_recent."""
    served = served_models(params)["text"]
    rp = ReportParams.from_params(params)
    typical_regimes, regimes = rp.typical_regimes, rp.regimes
    names = [n for n in rp.text_models if all(n in m["text"][r]["all_rows"] for r in regimes)]
    head = [f"**{n}** (default)" if n == served else n for n in names]
    rows = ["| data | regime (rows) | " + " | ".join(head) + f" | {served} vs the target's baseline | vs {STRONG_TEXT_BASELINE} |",
            "|---" * (len(names) + 4) + "|"]
    for regime in regimes:
        t = m["text"][regime]["all_rows"]
        cells = [f"**{_text_cell(t[n])}**" if n == served else _text_cell(t[n]) for n in names]
        two = regime in typical_regimes
        base = {f: max(t[TEXT_BASELINE][f], t[TYPICAL][f]) if two else t[TEXT_BASELINE][f] for f in TEXT_FIGURES}
        gains = " / ".join(f"{100 * (t[served][f] / base[f] - 1):+.1f}%" if base[f] else "-" for f in TEXT_FIGURES)
        strong = t[STRONG_TEXT_BASELINE]
        over = " / ".join(f"{100 * (t[served][f] / strong[f] - 1):+.1f}%" if strong[f] else "-" for f in TEXT_FIGURES)
        rows.append(f"| {data} | {regime} ({t[served]['n']}) | " + " | ".join(cells)
                    + f" | {gains} ({'the better of the two' if two else TEXT_BASELINE}) | {over} |")
    return "\n".join(rows)


def lm_sample_table(params: dict, m: dict, data: str = SAMPLE) -> str:
    """The fine-tuned LM, the base LM and retrieval on the rows all text models share (the LMs
    write a capped draw): BLEU-1 / ROUGE-L / CIDEr / embedding cosine."""
    cols = [("retrieval", TEXT_BASELINE), ("llm_lora (fine-tuned)", "llm_lora"), ("llm_base", "llm_base")]
    rows = ["| data | regime (rows) | " + " | ".join(h for h, _ in cols) + " |", "|---" * (len(cols) + 2) + "|"]
    for regime in ReportParams.from_params(params).regimes:
        t = m["text"][regime].get("shared_rows") or m["text"][regime]["all_rows"]
        n = t[cols[0][1]]["n"]
        rows.append(f"| {data} | {regime} ({n}) | "
                    + " | ".join(_text_cell(t[c], TEXT_FIGURES + ("embedding_cosine",)) for _, c in cols) + " |")
    return "\n".join(rows)


def behaviour_lm_sample_table(params: dict, m: dict) -> str:
    """The behaviour LM against its fallback on exactly the test rows the LM answered
    (metrics/train_behaviour_lm.json): log1p-RMSE / high-low accuracy / Spearman."""
    lm = m.get("train_behaviour_lm")
    if lm is None:
        raise KeyError("report: no train_behaviour_lm.json in the metrics folder")
    rows = ["| regime | test rows the LM answered (with an image) | behaviour LM | fallback, same rows | unparsable answers |",
            "|---|---|---|---|---|"]
    for regime in ReportParams.from_params(params).regimes:
        r = lm.get(regime, {})
        answered = r.get("answered_test_rows")
        if not answered:
            continue
        fallback = next(k for k in answered if k != "lm")
        rows.append(f"| {regime} | {answered['lm']['n']} ({r['lm_with_image']}) | {_likes_cell(answered['lm'], False)} "
                    f"| {fallback}: {_likes_cell(answered[fallback], False)} | {r['unparsable_answers_took_fallback']} |")
    return "\n".join(rows)


# bench/time_features.py's comparison of the trees' clock encodings on the sample (a committed file)
TIME_FEATURES_BENCH = Path(__file__).resolve().parents[2] / "bench" / "results" / "time_features.json"


def time_features_table(params: dict, m: dict) -> str:
    """Per clock encoding (regress_within_bucket.xgb.time_features): val / test log1p-RMSE of the regime
    models refitted with it, per regime and the mean over regimes, and how many of the regimes' hour-bucket
    and weekday effects on the test rows lie inside the observed 95% intervals; the params' choice marked."""
    b = json.loads(TIME_FEATURES_BENCH.read_text())
    regimes, chosen = params["split"]["regimes"], params["regress_within_bucket"]["xgb"]["time_features"]
    rows = ["| time_features | " + " | ".join(f"{r}: val / test" for r in regimes) + " | mean: val / test | "
            "hour buckets inside (of 6 per regime) | weekdays inside (of 7 per regime) |", "|---" * (len(regimes) + 4) + "|"]
    for mode, res in b["modes"].items():
        cells = [f"{_f(res[r]['val_rmse_log1p'])} / {_f(res[r]['test_rmse_log1p'])}" for r in regimes]
        mean = b["mean_rmse_log1p"][mode]
        inside = [sum(round(res[r][f"{g}_inside"] * n) for r in regimes) for g, n in (("hour_bucket", 6), ("weekday", 7))]
        rows.append(f"| {mode}{' (params)' if mode == chosen else ''} | " + " | ".join(cells)
                    + f" | {_f(mean['val'])} / {_f(mean['test'])} | {inside[0]} of {6 * len(regimes)} | {inside[1]} of {7 * len(regimes)} |")
    return "\n".join(rows) + f"\n\n(CPU: {b['cpu']}.)"


def time_effect_table(params: dict, m: dict) -> str:
    """The served model's time effect against the observed one on each regime's test rows (evaluate's
    `time_effect`, tweetsim/likes/timeeffect.py): groups whose model effect lies inside the observed
    95% interval, and the model's largest step between neighbouring hour buckets with that step's interval."""
    served = served_models(params)["likes"]
    rows = ["| regime | test rows (accounts with 2 or more) | hour buckets inside | weekdays inside | "
            "largest hour-bucket step: model (observed 95% interval) | single-hour steps inside |", "|---" * 6 + "|"]
    for regime in params["split"]["regimes"]:
        e = m["likes"][regime][served].get("time_effect")
        if e is None:
            rows.append(f"| {regime} | no time_effect in metrics/likes.json (`dvc repro evaluate` writes it) | - | - | - | - |")
            continue
        share = lambda g: f"{sum(x['inside'] for x in e[g]['groups'].values())} of {len(e[g]['groups'])}"  # noqa: E731
        st = e["hour_bucket"]["largest_step"]
        step = "-" if st is None else f"{st['from']} to {st['to']}: {st['model']:+.3f} ({st['low']:+.3f} to {st['high']:+.3f})"
        hours = e["hour"]["steps"].values()
        rows.append(f"| {regime} | {e['n_rows']:,} ({e['n_accounts']}) | {share('hour_bucket')} | {share('weekday')} | {step} "
                    f"| {sum(x['inside'] for x in hours)} of {len(hours)} |")
    return "\n".join(rows)


def edits_sample_table(params: dict, m: dict) -> str:
    """Each edit of `writer.edits` per regime: whether val kept it, and what it adds to the served
    writer's choice on val and on test rows (select_text's `edit_gains`: the kept edits with that one
    toggled), BLEU-1 / ROUGE-L / CIDEr."""
    st = m.get("select_text")
    if st is None:
        raise ValueError("metrics/select_text.json is missing (`dvc repro select_text` writes it)")
    rows = ["| regime | edit | kept (val) | gain on val: BLEU-1 / ROUGE-L / CIDEr | gain on test: BLEU-1 / ROUGE-L / CIDEr |",
            "|---" * 5 + "|"]
    for regime in params["split"]["regimes"]:
        gains = st[regime]["edit_gains"]
        for edit in params["writer"]["edits"]:
            cell = lambda s: " / ".join(f"{gains[s][edit]['gain'][k]:+.4f}" for k in TEXT_FIGURES)  # noqa: E731
            rows.append(f"| {regime} | `{edit}` | {'yes' if gains['val'][edit]['kept'] else 'no'} | {cell('val')} | {cell('test')} |")
    return "\n".join(rows)


TABLES: dict[str, Callable[[dict, dict], str]] = {
    "headline-sample": headline_table,
    "likes-sample": likes_sample_table,
    "intervals-sample": intervals_sample_table,
    "text-sample": text_sample_table,
    "lm-sample": lm_sample_table,
    "behaviour-lm-sample": behaviour_lm_sample_table,
    "time-features-sample": time_features_table,
    "time-effect-sample": time_effect_table,
    "edits-sample": edits_sample_table,
}

# tables of the figures on all the shared data: rendered from the committed results/full/ (the metrics files
# of `dvc exp run -S download.source=../shared/data/adobe`; results/full/README.md says how they were made)
FULL_TABLES: dict[str, Callable[[dict, dict], str]] = {
    "headline-full": headline_table,
    "likes-full": likes_sample_table,
    "served-full": intervals_sample_table,
    "text-full": lambda params, m: text_sample_table(params, m, FULL),
    "lm-full": lambda params, m: lm_sample_table(params, m, FULL),
}

_BLOCK = re.compile(r"(<!-- table:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)


def load_metrics(metrics_dir: str | Path) -> dict:
    """likes.json and text.json of a metrics folder, and train_behaviour_lm.json where it has one."""
    d = Path(metrics_dir)
    out = {k: json.loads((d / f"{k}.json").read_text()) for k in ("likes", "text")}
    if (d / "select_text.json").is_file():
        out["select_text"] = json.loads((d / "select_text.json").read_text())
    if (d / "train_behaviour_lm.json").is_file():
        out["train_behaviour_lm"] = json.loads((d / "train_behaviour_lm.json").read_text())
    return out


def _fill(text: str, params: dict, metrics: dict, full: dict | None, seen: list[str]) -> str:
    tables = {**TABLES, **(FULL_TABLES if full is not None else {})}

    def fill(match: re.Match) -> str:
        name = match["name"]
        if name not in tables:
            raise ValueError(f"marker table:{name} names no table; known: {sorted(tables)}")
        seen.append(name)
        # blank lines around the table: a Markdown table must not touch the comment lines
        return f"{match[1]}\n{tables[name](params, full if name in FULL_TABLES else metrics)}\n\n{match[4]}"

    return _BLOCK.sub(fill, text)


def _require_all(seen: list[str], full: dict | None) -> None:
    missing = sorted((set(TABLES) | (set(FULL_TABLES) if full is not None else set())) - set(seen))
    if missing:
        raise ValueError(f"no <!-- table:NAME --> block for {missing}")
    log.info("tables rendered: %s", ", ".join(seen))


def render_tables(readme: str, params: dict, metrics: dict, full: dict | None = None) -> str:
    """The text with every `<!-- table:NAME -->` block replaced by TABLES[NAME]'s rendering of the
    sample's `metrics` (FULL_TABLES[NAME]'s of `full`, the metrics on all the shared data, when given).
    An unknown name, or a table with no block, is an error: a renamed marker must not leave a table
    silently unchecked."""
    seen: list[str] = []
    out = _fill(readme, params, metrics, full, seen)
    _require_all(seen, full)
    return out


def render_files(texts: dict[str, str], params: dict, metrics: dict, full: dict | None = None) -> dict[str, str]:
    """render_tables over several files (the README and docs/*.md): each table must have a block in
    one of them at least."""
    seen: list[str] = []
    out = {name: _fill(text, params, metrics, full, seen) for name, text in texts.items()}
    _require_all(seen, full)
    return out
