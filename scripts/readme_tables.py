"""Regenerate the result tables of README.md and docs/*.md from the committed files that hold them.

Each generated table sits between `<!-- table:NAME -->` and `<!-- /table -->`: NAME one of
tweetsim/pipeline/tables.py's TABLES (rendered from the sample's metrics/), FULL_TABLES (from
results/full/: the metrics of the run on all the shared data), the hostile-input tables of
docs/reliability.md (`hostile-*`, from tests/hostile_cases.yaml, the suite tests/test_hostile.py runs),
a bench's figures (`bench-*`, from bench/results/<bench>.json, which the bench writes: each block
names the command, the CPU and the load average the figures were measured under), or the README's
example commands with what they printed (`example-*`, from bench/results/readme_examples.json, which
scripts/readme_examples.py writes).
Every table has a block in one file at least; everything outside the blocks is left alone.

usage: python scripts/readme_tables.py [--check] [--readme README.md] [--docs docs] [--params params.yaml] [--metrics metrics] [--full results/full]
       [--bench bench/results]
  --check: write nothing; exit 1 and show the difference when a table is not what its file says
  (tests/test_report.py runs this).
"""

import argparse
import difflib
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without `pip install -e .` too

from tweetsim.pipeline.tables import load_metrics, render_files  # noqa: E402


HOSTILE = ROOT / "tests" / "hostile_cases.yaml"
SPECIAL = {"VIEWS_400_DIGITS": "views=<400 digits>", "VIEWS_5000_DIGITS": "views=<5,000 digits>",
           "MINUS_100K": "100,000 `-` before a number", "MEDIA_1MB": "a 1 MB cell", "LONG_101": "101 characters",
           "LONG_3000": "3,000 characters", "LONG_1MB": "1 MB of text"}


def _code(value) -> str:
    """A cell of the table: the input as written, in backticks (placeholders described in words)."""
    if value is None:
        return "empty"
    value = str(value)
    if value in SPECIAL:
        return SPECIAL[value]
    value = value if len(value) <= 70 else value[:67] + "..."
    return "`" + value.replace("|", "\\|").replace("`", "'") + "`"


def hostile_tables(cases: dict) -> dict[str, str]:
    """docs/reliability.md's tables, one per part of the suite."""
    rows = ["| field | bad cell | predict-likes, generate (both writers) | best-time --id | download |", "|---|---|---|---|---|"]
    for c in cases["cells"]:
        best = "exit 2: `0 rows with id 12`" if c["status"] == "rejected" else f"exit 0, `WARNING ... {c['reason']}...`"
        rows.append(f"| {c['field']} | {_code(c['cell'])} | `{c['status']}`, reason `{c['reason']}...` | {best} | "
                    f"{'row to rejects.csv' if c.get('download') else 'kept'} |")
    tables = {"hostile-cells": "\n".join(rows)}
    rows = ["| file | exit | rows' status | message |", "|---|---|---|---|"]
    for c in cases["files"]:
        what = c["name"].replace("_", " ") + (f" (`{c['column']}`)" if c.get("column") else "")
        rows.append(f"| {what} | {c['exit']} | {', '.join(c.get('statuses', [])) or '-'} | {_code(c['message'])} |")
    tables["hostile-files"] = "\n".join(rows)
    rows = ["| command line (`tweetsim ...`) | exit | message |", "|---|---|---|"]
    for c in cases["options"]:
        rows.append(f"| {_code(' '.join(c['argv']))} | {c['exit']} | {_code(c['message'])} |")
    tables["hostile-options"] = "\n".join(rows)
    rows = ["| `dvc exp run -S` | the stage's one line (exit 1) |", "|---|---|"]
    for c in cases["params"]:
        rows.append(f"| {_code(c['edit'])} | {_code(c['message'])} |")
    tables["hostile-params"] = "\n".join(rows)
    rows = ["| web request | HTTP | message on the page |", "|---|---|---|"]
    for c in cases["web"]:
        what = "; ".join([*(f"{k} {_code(v)}" for k, v in c.get("form", {}).items()),
                          *(f"upload: {c['upload'].replace('_', ' ')}" for _ in [0] if "upload" in c),
                          *(f"header {k}: {_code(v)}" for k, v in c.get("headers", {}).items())])
        rows.append(f"| {what} | {c['http']} | {_code(c['message'])} |")
    tables["hostile-web"] = "\n".join(rows)
    return tables


# ---- bench blocks: rendered from bench/results/<bench>.json, which each bench writes (bench/_results.py)

BENCH = ROOT / "bench" / "results"


def load_bench(folder: Path) -> dict[str, dict]:
    """bench name -> its committed JSON."""
    return {f.stem: json.loads(f.read_text()) for f in sorted(Path(folder).glob("*.json"))}


def _isa(flags: list[str]) -> str:
    for flag, name in (("amx_tile", "AMX"), ("avx512_vnni", "AVX-512 VNNI"), ("avx512f", "AVX-512"), ("avx2", "AVX2")):
        if flag in flags:
            return name
    return "no AVX2"


def measured(name: str, r: dict, lead: str = "Measured by") -> str:
    """The sentence a bench block opens with: the command, the CPU and the load the figures were measured under."""
    c, load = r["cpu"], r.get("load_average")
    under = (f"load average {load['start'][0]:g} at the start, {load['end'][0]:g} at the end (1 min)" if load
             else "load average not recorded")
    return (f"{lead} `{' '.join(r['argv']) if 'argv' in r else 'python bench/' + name + '.py'}` "
            f"(bench/results/{name}.json) on {c['model']} ({_isa(c['isa_flags'])}), {c['cores']} cores, {under}, "
            f"commit {r['commit'][:7]}{' with uncommitted changes' if r['commit'].endswith('+dirty') else ''}:")


def _value(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def figures_table(name: str, r: dict) -> str:
    """Every figure of a run, one row each (nested keys joined by '/'); a list of rows as its own table."""
    flat, tables = [], []

    def walk(d, prefix):
        for k, v in d.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict):
                walk(v, key + " / ")
            elif isinstance(v, list) and v and isinstance(v[0], dict):
                cols = list(v[0])
                tables.append("\n".join([f"| {' | '.join(cols)} |", "|" + "---|" * len(cols),
                                         *(f"| {' | '.join(_value(x.get(c, '')) for c in cols)} |" for x in v)]))
            else:
                flat.append(f"| {key} | {_value(v)} |")

    walk(r["figures"], "")
    return "\n\n".join([measured(name, r), "\n".join(["| figure | value |", "|---|---|", *flat]), *tables])


def encoder_isa_block(r: dict, params: dict) -> str:
    """docs/reproducibility.md: the encoder's CPU-proof settings (bench/bench_encoder_isa.py)."""
    f, p = r["figures"], r["figures"]["paths"]
    f32, w8, w7 = p["onnx float32"], p["onnx int8, 8-bit weights"], p["onnx int8, 7-bit weights"]
    default = params["encoder"]["round_bits"]
    rounded = [f"- {b}{' (the default)' if int(b) == default else ''}: {x['min_cosine']:g}, {x['nearest_unchanged']:.1%}, "
               f"{x['largest_similarity_change']:g};" for b, x in f["round_bits"].items()]
    return "\n".join([
        measured("bench_encoder_isa", r) + f" the sample's first {f['texts']} distinct tweet texts, "
        f"{f['max_length']} tokens, {f['sessions']} one-thread sessions, best of 2 passes.", "",
        f"- ONNX float32: {f32['texts_per_s']:g} texts/s; cosine to itself {f32['cosine_min']:g};",
        f"- ONNX int8, 8-bit weights: {w8['texts_per_s']:g} texts/s; cosine to float32 {w8['cosine_mean']:g} mean, "
        f"{w8['cosine_min']:g} min;",
        f"- ONNX int8, 7-bit weights (the default): {w7['texts_per_s']:g} texts/s; {w7['cosine_mean']:g} mean, "
        f"{w7['cosine_min']:g} min.", "",
        f"7-bit weights run at {w7['texts_per_s'] / w8['texts_per_s']:.2f}x the speed of 8-bit ones and cost "
        f"{w8['cosine_mean'] - w7['cosine_mean']:.4f} of mean cosine; float32 takes "
        f"{w7['texts_per_s'] / f32['texts_per_s']:.1f}x the default's time. The default's vectors rounded (same run), by "
        f"`round_bits`: the min cosine of a rounded vector to its own, the share of the {f['texts']} texts whose top-1 "
        "neighbour is unchanged, the largest change of a pairwise similarity:", "",
        *rounded[:-1], rounded[-1][:-1] + "."])


def predict_likes_block(r: dict, params: dict) -> str:
    """docs/router.md: what `predict-likes` serves per second (bench/bench_predict_likes.py), indented as a list item's."""
    f = r["figures"]
    lines = [measured("bench_predict_likes", r),
             f"{f['rows']} rows batched with ranges, {f['runtime']} encoder: {f['tweets_per_s_batched']:g} rows/s; "
             f"one at a time {f['tweets_per_s_one_at_a_time']:g} rows/s; the torch path ({f['torch_dtype']}) "
             f"{f['tweets_per_s_torch']:g} rows/s; batched time by step: "
             + ", ".join(f"{k} {v:.0%}" for k, v in f["share_of_batched_time"].items()) + "."]
    return "\n".join("  " + x for x in lines)


def lookalike_block(r: dict, params: dict) -> str:
    """docs/writer.md: look-alike brands' scoring rate (bench/bench_lookalike.py)."""
    f = r["figures"]
    return "\n".join([measured("bench_lookalike", r) + f" {f['rows']} unseen_brand test rows, after a "
                      f"{f['warm_up_rows']}-row warm-up.", "",
                      *(f"- `{k.replace('=', ': ')}`: {v:g} rows/s" for k, v in f["rows_per_s"].items())])


def writer_designs_block(r: dict, params: dict) -> str:
    """docs/writer.md: designs beyond the reranker, % over each bar on val and test (bench/writer_designs.py)."""
    bars = [b for b in r["baselines"]["test"] if b != "retrieval"]
    head = ["design", *(f"{s} vs {b} (BLEU-1 / ROUGE-L / CIDEr)" for s in ("val", "test") for b in bars),
            "val criterion", "kept by val"]
    rows = [f"| {' | '.join(head)} |", "|" + "---|" * len(head)]
    for name in sorted(r["designs"], key=lambda n: n != "served"):
        d = r["designs"][name]
        cells = [" / ".join(f"{d[s][f'vs_{b}_%'][k]:+g}" for k in ("bleu1", "rougeL", "cider")) for s in ("val", "test") for b in bars]
        rows.append(f"| {name} | {' | '.join(cells)} | {d['val_resampled_worst_gain_%']:+g} | {'yes' if d['kept_by_val'] else 'no'} |")
    ex = r["exact"]
    lines = [measured(f"writer_designs_{r['regime']}", r) + f" {r['regime']}, "
             f"{r['rows']['val']} val and {r['rows']['test']} test rows.", "", *rows, "",
             "Rows whose tweet is the real one, word for word (CIDEr-D gives each 10; the served writer's mean on test is "
             f"{ex['test']['served']['cider_sum'] / r['rows']['test']:.2g} a row): "
             + "; ".join(f"{s}: served {ex[s]['served']['rows']} ({ex[s]['served']['cider_sum_exact_rows']:g} of its "
                         f"CIDEr sum {ex[s]['served']['cider_sum']:g}), consensus_recent {ex[s]['consensus_recent']['rows']} "
                         f"({ex[s]['consensus_recent']['cider_sum_exact_rows']:g} of {ex[s]['consensus_recent']['cider_sum']:g})"
                         for s in ("val", "test")) + "."]
    if "rule_frontier_test" in r:
        best = {k: max(r["rule_frontier_test"], key=lambda x: x["test"][k]) for k in ("rougeL", "cider")}
        lines += ["", "Every choice rule of the grid on test (consensus mix, typicality weight, length bonus): "
                  + "; ".join(f"highest {k} {b['test'][k]:g} with rule {b['rule']} ({b['typical_share']:.0%} typical picks)"
                              for k, b in best.items()) + f"; `typical` itself: {r['baselines']['test']['typical']['rougeL']:g} / "
                  f"{r['baselines']['test']['typical']['cider']:g}."]
    return "\n".join(lines)


def encoder_block(r: dict, params: dict) -> str:
    """docs/scale.md: the text transformer's paths side by side (bench/bench_encoder.py)."""
    f = r["figures"]
    rows = ["| path | max_length | texts/s | x torch float32 | x torch bfloat16 | cosine to float32 mean / min |",
            "|---|---|---|---|---|---|"]
    for x in f["rows"]:
        cos = (f"{x['cosine_mean']:.4f} / {x['cosine_min']:.4f}" if "cosine_mean" in x else "identical bytes"
               if x.get("identical") else f"pairwise similarities' Spearman to float32 {x['spearman_to_float32']:.3f}")
        rows.append(f"| {x['path']} | {x['max_length']} | {x['texts_per_s']} | {x['x_torch_float32']:.2f} | "
                    f"{x['x_torch_bfloat16']:.2f} | {cos} |")
    out = [measured("bench_encoder", r) + f" {f['texts']} distinct tweet texts; export and quantisation "
           f"{f['export_s']:g} s, the static table's distillation {f['distill_s']:g} s.", "", *rows]
    if "classifier" in f:
        c = f["classifier"]
        out += ["", f"Like classifier ({c['folder']}), {c['prompts']} prompts at 48 tokens: torch bfloat16 "
                f"{c['torch_bfloat16_per_s']}/s, ONNX int8 {c['onnx_int8_per_s']}/s ({c['ratio']:g}x); largest "
                f"probability change {c['largest_probability_change']:g}, same most likely bucket on {c['same_bucket']:.1%} of rows."]
    return "\n".join(out)


def example_blocks(r: dict) -> dict[str, str]:
    """README.md: each example command with what it printed and wrote (scripts/readme_examples.py)."""
    out = {}
    for name, x in r["figures"].items():
        lines = [x["command"], *(f"# {line}" for line in x["printed"])]
        if "head" in x:
            lines += [x["head"]["command"], *(f"# {line}" for line in x["head"]["lines"])]
        out[f"example-{name}"] = "\n".join([measured("readme_examples", r, "Printed when run by"), "", "```bash", *lines,
                                            "```"])
    return out


SIDES = {"native": "native kernels", "avx2": "held to AVX2"}


def isa_compare_block(name: str):
    """docs/reproducibility.md: native kernels against the AVX2 hold (bench/isa_compare.py), from bench/results/`name`.json."""

    def block(r: dict, params: dict) -> str:
        c = r["comparison"]
        moved = sorted(((v["rel"] or 0, k, v) for k, v in c["headline_changed"].items()), reverse=True)
        (top, key, v), rest = moved[0], [x[0] for x in moved[1:]]
        return "\n".join([
            measured(name, r), "",
            "- identical outputs on both sides: " + ", ".join(s for s, x in c["stages"].items() if x["identical"]) + ";",
            f"- different outputs: {', '.join(c['differing_stages'])} (the first: {c['first_differing_stage']});",
            f"- headline drift: at most {top:.2%} relative ({key} {v['native']:.4f} native, {v['avx2']:.4f} held); the other "
            f"{len(rest)} figures that moved: {min(rest, default=0):.2%} to {max(rest, default=0):.2%};",
            "- wall time: " + ", ".join(f"{SIDES.get(side, side)} {x['wall_s']:,.0f} s" for side, x in r["runs"].items())
            + "."])

    return block


def isa_drift_line(r: dict, params: dict) -> str:
    """README: one line of bench/results/isa_compare_full.json, how far lifting the hold moves the outputs."""
    c = r["comparison"]
    top, key = max((v["rel"] or 0, k) for k, v in c["headline_changed"].items())
    text = [k for k in c["headline_changed"] if ".text_" in k]
    return (f"{measured('isa_compare_full', r)} on all the shared data, with native kernels instead, "
            f"{len(c['differing_stages'])} stages write other bytes, the trained ones "
            f"({', '.join(c['differing_stages'][:3])}, ...), and the headline figures move by at most "
            f"{top:.2%} ({key}); {len(text)} text figures moved.")


def repro_timing_block(name: str):
    """docs/reproducibility.md: one `dvc repro` held to AVX2 (bench/isa_compare.py --side avx2), per stage."""

    def block(r: dict, params: dict) -> str:
        run, shared = r["runs"]["avx2"], r.get("shared_cache", ["models"])
        return "\n".join([
            measured(name, r), "",
            f"`dvc repro` held to AVX2 with {', '.join(f'`{s}`' for s in r['params_set']) or 'the default params'}, "
            f"an empty DVC cache and of `.cache` only {', '.join(f'`{s}`' for s in shared)}: "
            f"{run['wall_s']:,.0f} s ({run['wall_s'] / 60:.1f} min) in all.", "",
            "| stage | seconds |", "|---|---|", *(f"| {s} | {t:,.1f} |" for s, t in run["stages_s"].items())])

    return block


BENCH_BLOCKS = {"bench-isa-compare": ("isa_compare", isa_compare_block("isa_compare")),
                "bench-isa-compare-full": ("isa_compare_full", isa_compare_block("isa_compare_full")),
                "bench-isa-drift": ("isa_compare_full", isa_drift_line),
                "bench-full-repro": ("full_repro", repro_timing_block("full_repro")),
                "bench-full-repro-warm": ("full_repro_warm", repro_timing_block("full_repro_warm")),
                "bench-encoder-isa": ("bench_encoder_isa", encoder_isa_block),
                "bench-predict-likes": ("bench_predict_likes", predict_likes_block),
                "bench-lookalike": ("bench_lookalike", lookalike_block),
                "bench-encoder": ("bench_encoder", encoder_block),
                "bench-writer-designs-unseen-time": ("writer_designs_unseen_time", writer_designs_block),
                "bench-writer-designs-unseen-brand": ("writer_designs_unseen_brand", writer_designs_block)}


def bench_tables(results: dict[str, dict], params: dict) -> dict[str, str]:
    """One block per committed bench result: the named renderings above, a table of figures for the others."""
    tables = {name: fn(results[bench], params) for name, (bench, fn) in BENCH_BLOCKS.items() if bench in results}
    if "readme_examples" in results:
        tables.update(example_blocks(results["readme_examples"]))
    named = {"readme_examples", *(bench for bench, _ in BENCH_BLOCKS.values())}
    for bench, r in results.items():
        if bench not in named and "figures" in r:
            tables["bench-" + bench.removeprefix("bench_").replace("_", "-")] = figures_table(bench, r)
    return tables


def render_docs(text: str, tables: dict[str, str]) -> str:
    for name, table in tables.items():
        start, end = f"<!-- table:{name} -->", "<!-- /table -->"
        if start not in text:
            raise ValueError(f"no {start} marker")
        head, rest = text.split(start, 1)
        text = f"{head}{start}\n{table}\n{end}{rest.split(end, 1)[1]}"
    return text


def render_all(texts: dict[str, str], params: dict, metrics: dict, full: dict, cases: dict,
               bench: dict[str, dict] | None = None) -> dict[str, str]:
    """Every file's text with its tables rendered; each table must have a block somewhere. `bench`:
    load_bench's results, rendered as bench_tables says."""
    hostile = {**hostile_tables(cases), **bench_tables(bench or {}, params)}
    texts = {k: v for k, v in texts.items()}
    placed = set()
    for name, text in texts.items():
        for table in hostile:
            if f"<!-- table:{table} -->" in text:
                placed.add(table)
                text = render_docs(text, {table: hostile[table]})
        texts[name] = text
    if set(hostile) - placed:
        raise ValueError(f"no <!-- table:NAME --> block for {sorted(set(hostile) - placed)}")
    # the hostile blocks are filled: hide them from render_files, which knows only its own tables
    masked = {k: _mask(v, hostile) for k, v in texts.items()}
    rendered = render_files(masked, params, metrics, full)
    return {k: _unmask(rendered[k], hostile) for k in texts}


def _mask(text: str, names) -> str:
    for name in names:
        text = text.replace(f"<!-- table:{name} -->", f"<!-- hostile:{name} -->")
    return text


def _unmask(text: str, names) -> str:
    for name in names:
        text = text.replace(f"<!-- hostile:{name} -->", f"<!-- table:{name} -->")
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a table differs; write nothing")
    ap.add_argument("--readme", default=ROOT / "README.md", type=Path)
    ap.add_argument("--docs", default=None, type=Path, help="folder of the docs pages (default: docs/ beside the README)")
    ap.add_argument("--params", default=ROOT / "params.yaml", type=Path)
    ap.add_argument("--metrics", default=ROOT / "metrics", type=Path)
    ap.add_argument("--full", default=ROOT / "results" / "full", type=Path, help="metrics of the run on all the shared data")
    ap.add_argument("--bench", default=BENCH, type=Path, help="the benches' results (bench/results/*.json)")
    a = ap.parse_args(argv)
    docs = a.docs or a.readme.parent / "docs"
    files = [a.readme, *sorted(docs.glob("*.md"))]
    # plain YAML, not tweetsim.params.load_params: only a few keys are read, and the script stays
    # usable on a params file of another commit
    params = yaml.safe_load(a.params.read_text())
    old = {str(f): f.read_text() for f in files}
    try:
        new = render_all(old, params, load_metrics(a.metrics), load_metrics(a.full),
                         yaml.safe_load(HOSTILE.read_text()), load_bench(a.bench))
    except (ValueError, KeyError) as e:
        print(f"readme_tables: {e}", file=sys.stderr)
        return 2
    stale = [f for f in old if new[f] != old[f]]
    if not stale:
        print(f"readme_tables: the tables of {len(files)} files match {a.metrics}/, {a.full}/, {HOSTILE.name} and {a.bench}/")
        return 0
    if a.check:
        for f in stale:
            sys.stdout.writelines(difflib.unified_diff(old[f].splitlines(True), new[f].splitlines(True),
                                                       f"{f} (committed)", f"{f} (from the committed sources)"))
        print(f"readme_tables: {len(stale)} files differ from their sources: run python scripts/readme_tables.py",
              file=sys.stderr)
        return 1
    for f in stale:
        Path(f).write_text(new[f])
    print(f"readme_tables: tables rewritten in {', '.join(Path(f).name for f in stale)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
