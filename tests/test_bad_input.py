"""Bad input never crashes, never drops a row, never overwrites a file.

A property-based fuzz of the reader and the media parser (any string in any cell ends as a parsed
value or a reject with a reason); the two-column format; chunking and interruption; the output lock
across two processes; the download stage's missing column; params through the stages. The fakes
here serve tests/test_hostile.py too, which runs every case of tests/hostile_cases.yaml."""

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stages_helper import ROOT, run_download, stage, write_params

from tweetsim.apps import io as cliio
from tweetsim.apps.cli import main
from tweetsim.data.load import REQUIRED, normalise, read_official
from tweetsim.data.media import MediaParseError, parse_media
from tweetsim.config.params import ParamsError, load_params, section
from tweetsim.data.schema import pa_roundtrip, to_arrow

GOOD = {"id": "11", "date": "2021-05-03 10:00:00", "likes": "5", "content": "Big launch <hyperlink>", "username": "nike",
        "media": "[Photo(previewUrl='https://x/a.jpg', fullUrl='https://x/a.jpg')]", "inferred company": "nike"}
VIDEO = "[Video(thumbnailUrl='https://x/t.jpg', duration=3.0, views={})]"
VARIANT = "[Video(thumbnailUrl='https://x/t.jpg', variants=[VideoVariant(contentType='video/mp4', url='https://x/v.mp4', bitrate={})])]"
# one fixture per bad-input case: (field, bad cell, status the CLIs give the row)
CASES = {
    "id_overflow": ("id", "99999999999999999999999", "rejected"),
    "id_text": ("id", "abc", "rejected"),
    "id_fraction": ("id", "1.5", "rejected"),
    "id_negative": ("id", "-3", "rejected"),
    "id_empty": ("id", None, "rejected"),
    "date_3000": ("date", "3000-01-01", "partial"),
    "date_1500": ("date", "1500-01-01", "partial"),
    "date_now": ("date", "now", "partial"),
    "media_minus_string": ("media", VIDEO.format("-'x'"), "partial"),
    "media_400_digits": ("media", VIDEO.format("1" * 400), "partial"),
    "media_bitrate_pow": ("media", VARIANT.format("10**23"), "partial"),
    "media_bitrate_huge": ("media", VARIANT.format(10**23), "partial"),
    "media_100k_minus": ("media", VIDEO.format("-" * 100_000 + "5"), "partial"),
    "media_views_1e400": ("media", VIDEO.format("1e400"), "partial"),
    "media_views_5000_digits": ("media", VIDEO.format("1" * 5000), "partial"),
}


def fixture_file(tmp_path, case: str, suffix: str = ".csv"):
    """Three rows: good, the case's bad cell, good (ids 11, <bad or 12>, 13)."""
    field, cell, _ = CASES[case]
    rows = [dict(GOOD, id="11"), {**GOOD, "id": "12", field: cell}, dict(GOOD, id="13")]
    path = tmp_path / f"{case}{suffix}"
    df = pd.DataFrame(rows)
    df.to_csv(path, index=False) if suffix == ".csv" else df.to_excel(path, index=False)
    return path


# ---------------------------------------------------------------- fuzz
CELL = st.one_of(st.none(), st.text(max_size=40), st.integers(-2**70, 2**70).map(str),
                 st.floats(allow_nan=True, allow_infinity=True).map(repr),
                 st.sampled_from(["now", "today", "3000-01-01", "1500-01-01", "2021-05-03", "1e400", "-3", "1.5", "",
                                  "99999999999999999999999", "[]", "nan"]))
LITERAL = st.one_of(st.integers(-2**80, 2**80).map(str), st.floats().map(repr), st.text(max_size=8).map(repr),
                    st.sampled_from(["-'x'", "10**23", "1e400", "-" * 50 + "5", "None", "[]", "x", "-1e400", "'\\ud800'"]))
MEDIA = st.one_of(
    st.text(max_size=60),
    st.tuples(st.sampled_from(["Photo", "Video", "Gif", "VideoVariant", "Tweet"]),
              st.sampled_from(["previewUrl", "fullUrl", "thumbnailUrl", "views", "duration", "variants", "bitrate"]),
              LITERAL, st.sampled_from(["", "[", "]", ")", ","])).map(
        lambda t: f"[{t[0]}(thumbnailUrl='https://x/t.jpg', {t[1]}={t[2]}){t[3]}]"),
    LITERAL.map(lambda v: VARIANT.format(v)),
)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.lists(st.fixed_dictionaries({c: CELL for c in [*REQUIRED, "likes", "content"]}), min_size=1, max_size=4),
       st.lists(MEDIA, min_size=4, max_size=4))
def test_fuzz_reader_every_row_parsed_or_rejected(records, media):
    df = pd.DataFrame([dict(r, media=m) for r, m in zip(records, media)]).astype(object)
    df = df.where(df.notna(), None)
    rows, rejects = normalise(df, "f", "f.csv")  # the download stage's rule: a bad row is rejected
    rejected = {r["row"] for r in rejects}
    assert all(r["reason"] for r in rejects)
    assert len(rows) + len(rejected) == len(df)
    to_arrow(rows)  # what is kept can be stored (no out-of-range date or count)
    kept, problems = normalise(df, "f", "f.csv", required=("id",))  # the CLIs' rule: every row kept
    assert len(kept) == len(df)
    pa_roundtrip(kept)


@FUZZ
@given(MEDIA)
def test_fuzz_media_parser_parses_or_rejects(text):
    try:
        items = parse_media(text)
    except MediaParseError as e:
        assert str(e)
        return
    for it in items:
        for key in ("views", "duration"):
            assert it[key] is None or 0 <= it[key] < 2**63
        assert all(v["bitrate"] is None or 0 <= v["bitrate"] < 2**63 for v in it["variants"])


# ---------------------------------------------------------------- fakes for the two commands
class FakePredictor:
    made = 0

    def __init__(self, models, threads, models_of=None):
        FakePredictor.made += 1
        self.context = None
        self.intervals = "fake"
        self.bundle, self.routes = {"regime": "fake"}, {"fake": None}  # routes_of_last: route "regime:fake" on every row

    def predict(self, rows):
        return np.array([100.0 + len(str(c)) for c in rows["content"]])

    def predict_with_range(self, rows):
        likes = self.predict(rows)
        return likes, likes / 2, likes * 2


class FakeWriter:
    made = 0

    def __init__(self, params, adapter, pool):
        FakeWriter.made += 1
        self.model = self.tok = self.encoder = None
        self.name = "fake"

    def images(self, rows, media_dir):
        return None, None, {}

    def prompts(self, rows):
        from tweetsim.writer.prompts import verbalise  # the real metadata lines (media_phrase included)

        return [verbalise(r) for r in rows.to_dict("records")]


def fake_generate(model, tok, prompts, cfg, progress=False, feats=None, has_image=None):
    return [p.splitlines()[-2][:30] for p in prompts], {"new_tokens": len(prompts), "seconds": 0.01}


def tiny_select_writer(params, writer_dir, pool, selector="reranked", context=None, adapter=None):
    """The real default writer (consensus) over a three-tweet pool, instead of models/writer and data/."""
    from dataclasses import replace

    from tweetsim.writer.config import WriterConfig
    from tweetsim.writer.tweet_writer import TweetWriter

    FakeWriter.made += 1
    table = pd.DataFrame({"source": "pool", "id": [1, 2, 3], "date": pd.to_datetime(["2021-01-01"] * 3, utc=True),
                          "username": "acct", "company": "brand",
                          "content": ["new shoes <hyperlink>", "new shoes today <hyperlink>", "hello"]})
    return TweetWriter(table, replace(WriterConfig.from_params(params["writer"]), caption_similarity=False), context=context)


@pytest.fixture
def fakes(monkeypatch):
    from tweetsim.apps import generate as generate_cmd
    from tweetsim.apps import predict_likes as predict_cmd

    # the names the commands call (imported into their modules)
    monkeypatch.setattr(predict_cmd, "load_likes_model", FakePredictor)
    monkeypatch.setattr(generate_cmd, "Writer", FakeWriter)
    monkeypatch.setattr(generate_cmd, "select_writer", tiny_select_writer)
    monkeypatch.setattr(generate_cmd, "generate", fake_generate)
    FakePredictor.made = FakeWriter.made = 0


def run_cli(cmd, src, out, *extra):
    return main([cmd, "--input", str(src), "--output", str(out), *extra])


@pytest.mark.parametrize("case", ["id_text", "date_now"])
@pytest.mark.parametrize("cmd,value,extra", [("predict-likes", "likes", []), ("generate", "content", []),
                                             ("generate", "content", ["--writer", "lm"])])
def test_cli_keeps_every_row_and_says_why(case, cmd, value, extra, fakes, tmp_path, capsys):
    field, _, status = CASES[case]
    src = fixture_file(tmp_path, case)
    assert run_cli(cmd, src, tmp_path / "out.csv", *extra) == 0
    out = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    ranges = ["likes_low", "likes_high", "route", "route_reason"] if cmd == "predict-likes" else []
    assert list(out.columns) == ["id", value, *ranges, "status", "reason"] and len(out) == 3
    assert not ranges or all(out[c][1] == "" for c in ranges) == (status == "rejected")
    assert out["id"].tolist()[0::2] == ["11", "13"] and out["status"].tolist() == ["ok", status, "ok"]
    assert out["reason"][1].startswith(f"{field}: ") and out[value][0] != ""
    assert (out[value][1] == "") == (status == "rejected")
    err = capsys.readouterr()
    assert "row 3 id" in err.err and field in err.err
    assert "3 rows: 2 ok" in err.out and "rows/s" in err.out
    # the challenge's two columns: same rows, problems on stderr and in the summary line
    assert run_cli(cmd, src, tmp_path / "two.csv", "--two-columns", *extra) == 0
    two = pd.read_csv(tmp_path / "two.csv", dtype=str, keep_default_na=False)
    assert list(two.columns) == ["id", value] and len(two) == 3
    assert f"1 {status}" in capsys.readouterr().out


@pytest.mark.parametrize("cmd", ["predict-likes", "generate"])
@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_output_equal_to_input_is_refused(cmd, suffix, fakes, tmp_path, capsys):
    src = fixture_file(tmp_path, "date_now", suffix)
    before = src.read_bytes()
    assert run_cli(cmd, src, tmp_path / "." / src.name) == 2
    assert "is the input file" in capsys.readouterr().err and src.read_bytes() == before


@pytest.mark.parametrize("cmd", ["predict-likes", "generate"])
def test_unwritable_output_fails_before_any_work(cmd, fakes, tmp_path, capsys):
    src = fixture_file(tmp_path, "date_now")
    (tmp_path / "adir").mkdir()
    for out, msg in (("/proc/x.csv", "cannot write in /proc"), (tmp_path / "adir", "is a folder")):
        assert run_cli(cmd, src, out) == 2
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err
    assert FakePredictor.made == FakeWriter.made == 0  # refused before loading a model


def test_generate_missing_params_is_one_line(fakes, tmp_path, capsys):
    src = fixture_file(tmp_path, "date_now")
    assert run_cli("generate", src, tmp_path / "o.csv", "--params", "/nonexistent.yaml") == 2
    assert "cannot read /nonexistent.yaml" in capsys.readouterr().err
    bad = tmp_path / "p.yaml"
    bad.write_text(yaml.safe_dump({"generate": {"max_new_tokns": 3}}))
    assert run_cli("generate", src, tmp_path / "o.csv", "--params", str(bad)) == 2
    assert "did you mean 'generate.max_new_tokens'" in capsys.readouterr().err


def test_chunks_give_the_same_file_and_interruption_leaves_no_output(fakes, tmp_path, capsys):
    src = tmp_path / "many.csv"
    pd.DataFrame([dict(GOOD, id=str(i), content="x" * (i % 7)) for i in range(25)]).to_csv(src, index=False)
    assert run_cli("predict-likes", src, tmp_path / "a.csv", "--chunk-size", "4") == 0
    assert run_cli("predict-likes", src, tmp_path / "b.csv") == 0
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert "predict-likes: 100%" in capsys.readouterr().err  # the tqdm bar

    rows, rejects = read_official(src)
    calls = []

    def answer(chunk):
        calls.append(len(chunk))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return [1] * len(chunk)

    out = tmp_path / "c.csv"
    with pytest.raises(cliio.Interrupted, match="c.csv not written"):
        cliio.run_chunked(rows, rejects, answer, out, "likes", chunk_size=10)
    assert not out.exists() and calls == [10, 10, 5]
    partial = list(tmp_path.glob(".c.csv.*.partial"))  # this run's own partial file
    assert len(partial) == 1 and len(pd.read_csv(partial[0])) == 20  # the rows done are kept aside


def test_a_second_run_on_the_same_output_refuses(tmp_path):
    """Two runs with one --output: the one that comes second refuses before any work (a lock held by
    the first, another process here), instead of both writing into one file."""
    import subprocess
    import sys

    out, src = tmp_path / "likes.csv", tmp_path / "in.csv"
    src.write_text("id\n1\n")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from tweetsim.apps import io; "
                               f"io.check_output({str(out)!r}, {str(src)!r}); print('locked', flush=True); time.sleep(30)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(cliio.OutputError, match="another run is writing it"):
            cliio.check_output(out, src)
    finally:
        holder.kill()
        holder.wait()
    assert cliio.check_output(out, src) == out  # free again once the first run has ended
    cliio.release(out)


def test_best_time_never_writes_over_its_input(tmp_path, capsys):
    src = tmp_path / "posts.csv"
    pd.DataFrame([GOOD]).to_csv(src, index=False)
    before = src.read_bytes()
    assert main(["best-time", "--input", str(src), "--output", str(src), "--models", str(tmp_path)]) == 2
    assert "is the input file" in capsys.readouterr().err and src.read_bytes() == before
    assert main(["best-time", "--input", str(src), "--output", str(tmp_path), "--models", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


# ---------------------------------------------------------------- the download stage
def test_download_missing_column_writes_rejects_and_one_line(tmp_path):
    src = tmp_path / "t.xlsx"
    pd.DataFrame([GOOD]).drop(columns=["inferred company"]).to_excel(src, index=False)
    with pytest.raises(SystemExit, match=r"t\.xlsx: missing column\(s\) 'inferred company'") as e:
        run_download(tmp_path, src)
    assert "\n" not in str(e.value.code)
    rejects = pd.read_csv(tmp_path / "out" / "rejects.csv")
    assert rejects[["row", "field", "reason"]].values.tolist() == [[1, "inferred company", "missing column"]]


# ---------------------------------------------------------------- params
@pytest.mark.parametrize("key,value,hint", [
    ("split.sed", 1, "did you mean 'split.seed'"),
    ("download.max_reject_fracton", 0.1, "did you mean 'download.max_reject_fraction'"),
    ("download.exlude", [], "did you mean 'download.exclude'"),
    ("split.random.tset", 0.2, "did you mean 'split.random.test'"),
])
def test_unknown_params_key_names_section_key_and_closest(key, value, hint, tmp_path):
    path = write_params(tmp_path)
    params = yaml.safe_load(path.read_text())
    *head, last = key.split(".")
    node = params
    for k in head:
        node = node[k]
    node[last] = value
    path.write_text(yaml.safe_dump(params))
    section_name = ".".join(head)
    with pytest.raises(ParamsError, match=f"unknown key '{key}' in section '{section_name}'; {hint}"):
        load_params(path)
    with pytest.raises(SystemExit) as e:  # a stage stops with that one line, no traceback
        stage("download" if head[0] == "download" else "split").main(str(path), str(tmp_path / "out"))
    assert hint in str(e.value) and "\n" not in str(e.value)
    assert section("caption", ROOT / "params.yaml")["backend"]  # the shipped file passes its own check


def test_ctrl_c_in_a_stage_is_one_line_and_exit_130(monkeypatch, capsys):
    from tweetsim.pipeline.stage import stage as stage_entry

    @stage_entry
    def main():
        raise KeyboardInterrupt

    monkeypatch.setattr("sys.argv", ["stages/split.py"])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 130 and capsys.readouterr().err.splitlines()[-1] == "split: interrupted"


def test_ctrl_c_while_a_command_loads_is_one_line(monkeypatch, tmp_path, capsys):
    from tweetsim.apps import predict_likes as predict_cmd

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(predict_cmd, "load_likes_model", interrupted)
    src = tmp_path / "in.csv"
    pd.DataFrame([GOOD]).to_csv(src, index=False)
    assert main(["predict-likes", "--input", str(src), "--output", str(tmp_path / "o.csv")]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err and not (tmp_path / "o.csv").exists()
