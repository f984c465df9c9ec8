"""The hostile-input suite: every case of tests/hostile_cases.yaml through the surfaces it names (the
file commands on fake models, the download stage, a stage on an edited params.yaml, the web app's
form), each asserting the exit status (or HTTP status), the message, and one output row per input
row. docs/reliability.md's tables are rendered from the same file (scripts/readme_tables.py)."""

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from stages_helper import ROOT, run_download, stage, write_params
from test_app import FAKE_INFERENCE
from test_bad_input import GOOD, FakePredictor, fakes  # noqa: F401 (fixture)

from tweetsim.apps import io as cliio
from tweetsim.apps.cli import main

CASES = yaml.safe_load((Path(__file__).with_name("hostile_cases.yaml")).read_text())
VIDEO = "[Video(thumbnailUrl='https://x/t.jpg', duration=3.0, views={})]"
SPECIAL = {"VIEWS_400_DIGITS": VIDEO.format("1" * 400), "VIEWS_5000_DIGITS": VIDEO.format("1" * 5000),
           "MINUS_100K": VIDEO.format("-" * 100_000 + "5"), "MEDIA_1MB": "[Photo(previewUrl='" + "x" * 1_000_000 + "')]",
           "LONG_101": "b" * 101, "LONG_3000": "d" * 3000, "LONG_1MB": "d" * 1_000_000}
COMMANDS = {"predict-likes": ("likes", []), "generate": ("content", []), "generate-lm": ("content", ["--writer", "lm"])}


def count() -> int:
    """Cases run by this file (each case times the surfaces it goes through)."""
    return (len(CASES["cells"]) * (len(COMMANDS) + 1) + sum(c.get("download", False) for c in CASES["cells"])
            + len(CASES["files"]) * 3 + len(CASES["options"]) + len(CASES["params"]) + len(CASES["web"]))


def test_the_suite_has_at_least_150_cases():
    assert count() >= 150


def _cell(value):
    return SPECIAL.get(value, value) if isinstance(value, str) else value


def three_rows(tmp_path, field=None, cell=None, name="in.csv") -> Path:
    rows = [dict(GOOD, id="11"), dict(GOOD, id="12"), dict(GOOD, id="13")]
    if field is not None:
        rows[1][field] = _cell(cell)
    path = tmp_path / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


class FakeRouter:
    """best-time's model: pick() gives a predictor whose likes peak at 17h (the real best_time runs)."""

    def __init__(self, models, threads, models_of=None):
        pass

    def pick(self, rows):
        from test_app import Fakes

        class Hourly:
            state = type("State", (), {"context": None})()
            p = FAKE_INFERENCE

            def predict_with_probs(self, rows, context=None):
                return 100.0 - (rows["date"].dt.hour.to_numpy() - 17) ** 2 / 10, None

        assert Fakes  # the app's fakes and this one agree on the predictor's interface
        return "account", "fake", Hourly()


@pytest.fixture
def all_fakes(fakes, monkeypatch):  # noqa: F811
    from tweetsim.apps import best_time as best_cmd

    monkeypatch.setattr(best_cmd, "load_likes_model", FakeRouter)
    yield
    for out in list(cliio._LOCKS):
        cliio.release(out)


def run(argv, capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own exit
        code = e.code
    out = capsys.readouterr()
    return code, out.out + out.err


# ---------------------------------------------------------------- one bad cell
@pytest.mark.parametrize("case", CASES["cells"], ids=lambda c: c["name"])
@pytest.mark.parametrize("cmd", list(COMMANDS))
def test_cell_through_a_command(case, cmd, all_fakes, tmp_path, capsys):
    value, extra = COMMANDS[cmd]
    src = three_rows(tmp_path, case["field"], case["cell"])
    code, said = run([cmd.removesuffix("-lm"), "--input", str(src), "--output", str(tmp_path / "o.csv"), *extra], capsys)
    assert code == 0, said
    out = pd.read_csv(tmp_path / "o.csv", dtype=str, keep_default_na=False)
    assert len(out) == 3 and out["status"].tolist() == ["ok", case["status"], "ok"]
    assert out["reason"][1].startswith(case["reason"]), out["reason"][1]
    assert (out[value][1] == "") == (case["status"] == "rejected") and out[value][0] != ""
    assert "row 3 id" in said and "Traceback" not in said


@pytest.mark.parametrize("case", CASES["cells"], ids=lambda c: c["name"])
def test_cell_through_best_time(case, all_fakes, tmp_path, capsys):
    src = three_rows(tmp_path, case["field"], case["cell"])
    code, said = run(["best-time", "--input", str(src), "--id", "12", "--output", str(tmp_path / "c.csv")], capsys)
    if case["status"] == "rejected":  # the row has no valid id: it is not a post best-time can find
        assert code == 2 and "0 rows with id 12" in said
        return
    assert code == 0, said
    assert f"WARNING {src} row 3 id 12: {case['reason']}" in said and "treated as unknown" in said
    assert len(pd.read_csv(tmp_path / "c.csv")) == 168


@pytest.mark.parametrize("case", [c for c in CASES["cells"] if c.get("download")], ids=lambda c: c["name"])
def test_cell_through_download(case, tmp_path):
    src = three_rows(tmp_path, case["field"], case["cell"])
    out = run_download(tmp_path, src, max_reject_fraction=0.5)
    rejects = pd.read_csv(out / "rejects.csv")
    assert rejects["row"].unique().tolist() == [3] and case["field"] in rejects["field"].tolist()
    from tweetsim.data.schema import read_tweets

    assert read_tweets(out / "tweets.parquet")["id"].tolist() == [11, 13]


# ---------------------------------------------------------------- whole files
def build_file(tmp_path, how: str, column=None) -> Path:
    good = three_rows(tmp_path)
    text = good.read_text()
    frame = pd.read_csv(good, dtype=str)
    path = tmp_path / "in.csv"
    if how == "drop_column":
        frame.drop(columns=[column]).to_csv(path, index=False)
    elif how == "truncate":
        path.write_text(text.rstrip("\n")[: -len(GOOD["media"]) - len(GOOD["inferred company"]) - 30])
    elif how == "extra_field":
        lines = text.splitlines()
        path.write_text("\n".join([*lines[:2], lines[2] + ",surplus", *lines[3:]]) + "\n")
    elif how == "open_quote":
        path.write_text(text + '14,2021-05-03 10:00:00,,"never closed\n')
    elif how == "header_only":
        path.write_text(text.splitlines()[0] + "\n")
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "binary":
        path.write_bytes(bytes(range(256)) * 8)
    elif how == "fake_xlsx":
        path = tmp_path / "in.xlsx"
        path.write_text(text)
    elif how == "txt":
        path = tmp_path / "in.txt"
        path.write_text(text)
    elif how == "missing":
        path = tmp_path / "nothing.csv"
    elif how == "folder":
        path = tmp_path / "adir.csv"
        path.mkdir()
    elif how == "two_sheets":
        path = tmp_path / "in.xlsx"
        with pd.ExcelWriter(path) as w:
            frame.to_excel(w, index=False)
            frame.to_excel(w, index=False, sheet_name="more")
    elif how == "float_ids_xlsx":
        path = tmp_path / "in.xlsx"
        frame.assign(id=[1.2345678901234568e18 + k * 1e3 for k in range(3)]).to_excel(path, index=False)
    elif how == "duplicate_id":
        frame.assign(id=["11", "11", "13"]).to_csv(path, index=False)
    else:
        raise ValueError(how)
    return path


@pytest.mark.parametrize("case", CASES["files"], ids=lambda c: c["name"])
@pytest.mark.parametrize("cmd", ["predict-likes", "generate", "best-time"])
def test_file_through_a_command(case, cmd, all_fakes, tmp_path, capsys):
    src = build_file(tmp_path, case["build"], case.get("column"))
    out = tmp_path / "o.csv"
    if cmd == "best-time":
        ids = ["--id", "12"] if case["build"] != "duplicate_id" else ["--id", "13"]
        code, said = run([cmd, "--input", str(src), *ids, "--output", str(out)], capsys)
        rows = case.get("statuses")
        row = rows[1 if ids[1] == "12" else 2] if rows else None
        if case["exit"] == 0 and (row in (None, "rejected") or "id" == case.get("column")):
            assert code == 2 and "one post is needed" in said  # no row with that id to post
        else:
            assert code == case["exit"], said
            assert case["exit"] != 0 or "best:" in said
            if row == "partial":
                assert "WARNING" in said and case["message"] in said
        assert "Traceback" not in said
        return
    code, said = run([cmd, "--input", str(src), "--output", str(out)], capsys)
    assert code == case["exit"], said
    assert "Traceback" not in said
    if case["exit"] != 0:
        assert case["message"] in said and not out.exists()
        return
    table = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert table["status"].tolist() == case["statuses"]
    assert case["message"] in said + " ".join(table["reason"])


# ---------------------------------------------------------------- options
@pytest.mark.parametrize("case", CASES["options"], ids=lambda c: c["name"])
def test_option(case, all_fakes, tmp_path, capsys):
    src = three_rows(tmp_path)
    (tmp_path / "adir").mkdir()
    misspelt = tmp_path / "p.yaml"
    misspelt.write_text(yaml.safe_dump({"generate": {"max_new_tokns": 3}}))
    locked = tmp_path / "locked.csv"
    if "{locked}" in case["argv"]:
        import subprocess
        import sys

        holder = subprocess.Popen([sys.executable, "-c", "import time; from tweetsim.apps import io; "
                                   f"io.check_output({str(locked)!r}, None); print('locked', flush=True); time.sleep(60)"],
                                  stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "locked"
    import socket

    busy = socket.socket()  # a port another program listens on
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    places = {"{input}": str(src), "{output}": str(tmp_path / "o.csv"), "{folder}": str(tmp_path / "adir"),
              "{locked}": str(locked), "{misspelt_params}": str(misspelt), "{busy_port}": str(busy.getsockname()[1])}
    before = src.read_bytes()
    try:
        code, said = run([places.get(a, a) for a in case["argv"]], capsys)
    finally:
        busy.close()
        if "{locked}" in case["argv"]:
            holder.kill()
            holder.wait()
    assert code == case["exit"] and case["message"] in said, said
    assert "Traceback" not in said and src.read_bytes() == before and not (tmp_path / "o.csv").exists()


# ---------------------------------------------------------------- params edited as `dvc exp run -S` does
@pytest.mark.parametrize("case", CASES["params"], ids=lambda c: c["name"])
def test_params_edit_stops_a_stage_in_one_line(case, tmp_path):
    from dvc.utils.hydra import apply_overrides

    src = three_rows(tmp_path)
    out = run_download(tmp_path, src)
    params = write_params(tmp_path, **{"download.source": str(src)})
    apply_overrides(params, [case["edit"]])
    with pytest.raises(SystemExit) as e:
        stage("split").main(str(params), str(out), str(tmp_path / "metrics"))
    assert case["message"] in str(e.value.code) and "\n" not in str(e.value.code)


# ---------------------------------------------------------------- the web app's form
def upload(kind: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    if kind == "empty":
        return b""
    if kind == "text":
        return b"just some words, not a picture\n" * 10
    if kind == "over_limit":
        return bytes(1_100_000)
    if kind in ("truncated_png", "big_png"):
        pixels = np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8) if kind == "truncated_png" \
            else np.zeros((1000, 1200, 3), dtype=np.uint8)  # 1.2 megapixels in a small file
        Image.fromarray(pixels).save(buf, "PNG")
        return buf.getvalue()[: buf.tell() // 2] if kind == "truncated_png" else buf.getvalue()
    if kind == "many_frames_gif":
        frames = [Image.new("P", (16, 16), k % 256) for k in range(5000)]
        frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], optimize=False)
        return buf.getvalue()
    raise ValueError(kind)


@pytest.mark.parametrize("case", CASES["web"], ids=lambda c: c["name"])
def test_web_form(case, tmp_path):
    from test_app import Fakes, text

    from tweetsim.apps import serve as A

    client = A.create_app(Fakes().services(), max_upload_mb=1, max_pixels=1_000_000).test_client()
    data = {"brand": "nike", "account": "@nikestore", "date": "2021-05-03", "time": "14:30", "draft": "Just do it",
            "n": "3", **{k: _cell(v) for k, v in case.get("form", {}).items()}}
    if "upload" in case:
        data["image"] = (io.BytesIO(upload(case["upload"])), "up.gif" if "gif" in case["upload"] else "up.png")
    resp = client.post("/", data=data, content_type="multipart/form-data", headers=case.get("headers", {}))
    page = text(resp)
    assert resp.status_code == case["http"] and case["message"] in page, page[:2000]
    assert "Traceback" not in page
