import pandas as pd
import pytest

from tweetsim.data.load import InputError, load_sources, read_official, read_table, read_tweets, write_tweets

from conftest import SAMPLE

PHOTO = "[Photo(previewUrl='https://x/a?name=small', fullUrl='https://x/a?name=large')]"


def train_frame(n=4):
    return pd.DataFrame({
        "id": range(1, n + 1), "date": [f"2020-0{i}-01 10:00:00" for i in range(1, n + 1)],
        "likes": [5 * i for i in range(1, n + 1)], "content": [f"tweet {i} <hyperlink> #tag <mention>" for i in range(1, n + 1)],
        "username": ["acme"] * n, "media": [PHOTO] * n, "inferred company": ["acme corp"] * n,
    }).astype(object)


@pytest.mark.parametrize("suffix", ["csv", "xlsx", "parquet"])
def test_each_file_type_reads_the_same(tmp_path, suffix):
    df = train_frame()
    path = tmp_path / f"train.{suffix}"
    {"csv": lambda: df.to_csv(path, index=False), "xlsx": lambda: df.to_excel(path, index=False),
     "parquet": lambda: df.astype(str).to_parquet(path)}[suffix]()
    table, rejects, total = load_sources(path)
    assert total == 4 and rejects.empty
    assert table["likes"].tolist() == [5, 10, 15, 20]
    assert str(table["date"].dt.tz) == "UTC" and table["date"].iloc[0] == pd.Timestamp("2020-01-01 10:00", tz="UTC")
    assert table[["n_mentions", "n_hashtags", "n_hyperlinks"]].iloc[0].tolist() == [1, 1, 1]
    assert table["source"].unique().tolist() == ["train"] and table["n_photo"].tolist() == [1] * 4


def test_missing_column_names_file_and_column(tmp_path):
    path = tmp_path / "t.csv"
    train_frame().drop(columns=["media"]).to_csv(path, index=False)
    with pytest.raises(InputError, match=r"t\.csv: missing column\(s\) 'media'"):
        load_sources(path)


def test_empty_file_and_corrupt_xlsx(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match="empty.csv: empty file"):
        read_table(tmp_path / "empty.csv")
    (tmp_path / "bad.xlsx").write_bytes(b"this is not a zip")
    with pytest.raises(InputError, match="bad.xlsx: cannot read as xlsx"):
        read_table(tmp_path / "bad.xlsx")


def test_header_only_file_gives_no_rows(tmp_path):
    path = tmp_path / "t.csv"
    train_frame().iloc[:0].to_csv(path, index=False)
    table, rejects, total = load_sources(path)
    assert len(table) == 0 and total == 0


def test_bad_rows_are_rejected_with_file_row_field_and_reason(tmp_path):
    df = train_frame(6)
    df.loc[1, "likes"] = "lots"
    df.loc[2, "date"] = "yesterday-ish"
    df.loc[3, "media"] = "[Photo(previewUrl='x'"
    df.loc[4, "id"] = "x7"
    df.loc[5, "id"] = 1  # duplicate of the first row's id
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    table, rejects, total = load_sources(path)
    assert table["id"].tolist() == [1] and total == 6
    got = {(r.row, r.field) for r in rejects.itertuples()}
    assert got == {(3, "likes"), (4, "date"), (5, "media"), (6, "id"), (7, "id")}
    assert (rejects["source"] == str(path)).all()
    assert "not a non-negative integer: 'lots'" in rejects.loc[rejects["field"] == "likes", "reason"].iloc[0]


def test_behaviour_and_content_files_have_nullable_columns(sample_table):
    by = sample_table.groupby("source")
    assert by["likes"].apply(lambda s: s.isna().all())["behaviour_simulation_test_time"]
    assert by["content"].apply(lambda s: s.isna().all())["content_simulation_test_time"]
    assert by["likes"].apply(lambda s: s.notna().all())["train_rows_200_with_captions"]


def test_side_tables_are_joined(sample_table):
    t = sample_table
    assert t.loc[t["source"] == "content_simulation_test_time", "caption"].notna().all()
    assert t.loc[t["source"] == "train_rows_200_with_captions", "caption"].str.startswith("Image describes").any()
    timed = t[t["source"] == "content_simulation_test_time"]
    assert timed["acct_median_likes"].notna().mean() > 0.8 and timed["followers"].notna().mean() > 0.8


def test_parquet_round_trip_keeps_types(tmp_path, sample_table):
    write_tweets(sample_table, tmp_path / "t.parquet")
    back = read_tweets(tmp_path / "t.parquet")
    assert len(back) == len(sample_table)
    assert str(back["likes"].dtype) == "Int64" and str(back["date"].dtype) == "datetime64[ns, UTC]"
    video = back[back["n_video"] > 0].iloc[0]
    assert any(m["kind"] == "Video" and len(m["variants"]) for m in video["media"])


def test_read_official_keeps_every_row_in_order(tmp_path):
    df = train_frame(3)[["id", "content", "media"]]
    df.loc[1, "media"] = "garbage("
    path = tmp_path / "in.csv"
    df.iloc[::-1].to_csv(path, index=False)
    table, problems = read_official(path)
    assert table["id"].tolist() == [3, 2, 1]
    assert table["n_media"].tolist() == [1, 0, 1] and table["date"].isna().all()
    assert problems.loc[problems["field"] == "media", "row"].tolist() == [3]
    # the columns the file lacks are named on every row (its status is partial, not ok)
    absent = problems[problems["field"] != "media"]
    assert set(absent["field"]) == {"date", "username", "inferred company"} and len(absent) == 9
    assert absent["reason"].str.startswith("no such column in the file").all()


def test_cells_that_do_not_say_one_thing_are_refused(tmp_path):
    """Day/month-ambiguous dates, a bare year, an empty date, ids stored as floats above 2**53: each row
    is kept and named with its reason; an xlsx's other sheets are named in a warning."""
    rows = [{"id": "1", "date": "03/05/2021"}, {"id": "2", "date": "2022"}, {"id": "3", "date": None},
            {"id": "4", "date": "13/05/2021 10:00"}, {"id": "5", "date": "2021-05-03"}]
    path = tmp_path / "dates.csv"
    pd.DataFrame(rows).assign(username="u", media="[]", **{"inferred company": "c"}).to_csv(path, index=False)
    table, problems = read_official(path)
    why = dict(zip(problems["row"] - 1, problems["reason"]))
    assert why[1].startswith("ambiguous date") and why[2].startswith("a year, not a date") and why[3].startswith("empty")
    assert set(why) == {1, 2, 3} and table["date"].notna().tolist() == [False, False, False, True, True]
    from tweetsim.data.load import parse_count

    with pytest.raises(ValueError, match="above 2\\*\\*53"):
        parse_count(float(2**60))
    assert parse_count(float(2**40)) == 2**40
    book = tmp_path / "two.xlsx"
    with pd.ExcelWriter(book) as w:
        pd.DataFrame([{"id": 1}]).to_excel(w, sheet_name="tweets", index=False)
        pd.DataFrame([{"id": 2}]).to_excel(w, sheet_name="notes", index=False)
    import logging

    from tweetsim.data import load as L

    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    L.logger.addHandler(handler)
    try:
        assert read_official(book)[0]["id"].tolist() == [1]
    finally:
        L.logger.removeHandler(handler)
    assert any("1 other sheet(s) ignored: 'notes'" in m for m in seen)


def test_stage_fails_past_max_reject_fraction(tmp_path):
    from stages_helper import run_download

    df = train_frame(4)
    df.loc[0, "likes"] = "??"
    df.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(SystemExit, match="1 of 4 rows rejected"):
        run_download(tmp_path, tmp_path / "t.csv", max_reject_fraction=0.1)
    run_download(tmp_path, tmp_path / "t.csv", max_reject_fraction=0.5)
    assert len(pd.read_csv(tmp_path / "out" / "rejects.csv")) == 1
    assert len(read_tweets(tmp_path / "out" / "tweets.parquet")) == 3
    manifest = pd.read_csv(tmp_path / "out" / "media" / "manifest.csv")
    assert manifest["status"].tolist() == ["not_fetched"]


def test_download_stage_fetches_media_from_a_local_server(tmp_path):
    from httpserver import LocalServer, make_png
    from stages_helper import run_download

    srv = LocalServer({"a.png": make_png(1), "b.png": make_png(2)}).start()
    try:
        df = train_frame(3)
        df.loc[0, "media"] = f"[Photo(previewUrl='{srv.url('/img/a.png')}', fullUrl='{srv.url('/img/a.png')}')]"
        df.loc[1, "media"] = (f"[Video(thumbnailUrl='{srv.url('/img/b.png')}', variants=[], duration=3.0, views=9), "
                              f"Gif(thumbnailUrl='{srv.url('/missing/c.jpg')}', variants=[])]")
        df.loc[2, "media"] = "[]"
        df.to_csv(tmp_path / "t.csv", index=False)
        fetch = {"concurrency": 4, "per_host": 2, "connect_timeout": 2.0, "read_timeout": 2.0, "retries": 1,
                 "backoff": 0.01, "max_bytes": 1_000_000}
        out = run_download(tmp_path, tmp_path / "t.csv", fetch_media=True, fetch=fetch)
    finally:
        srv.stop()
    manifest = pd.read_csv(out / "media" / "manifest.csv").set_index("url")
    assert manifest.loc[srv.url("/img/a.png"), "status"] == "ok"
    assert manifest.loc[srv.url("/img/b.png"), "kind"] == "Video"
    assert manifest.loc[srv.url("/missing/c.jpg"), "status"] == "http_404"
    for rel in manifest.loc[manifest["status"] == "ok", "path"]:
        assert (out / "media" / rel).is_file()


def test_large_ids_and_likes_keep_every_digit_beside_a_null(tmp_path):
    # a null among whole numbers once made the column float64, which rounds anything above 2**53
    path = tmp_path / "big.csv"
    pd.DataFrame({"id": ["1234567890123456789", "not-an-id", "3"],
                  "likes": ["9223372036854775296", "", "7"]}).to_csv(path, index=False)
    rows, rejects = read_official(path)
    assert rows["id"].tolist()[0] == 1234567890123456789 and pd.isna(rows["id"][1])
    assert rows["likes"].tolist()[0] == 9223372036854775296 and rows["likes"].tolist()[2] == 7
    assert list(rejects.loc[~rejects["reason"].str.startswith("no such column"), "field"]) == ["id"]


def test_a_labelled_tweet_in_two_files_is_kept_once_and_the_copy_rejected(tmp_path):
    a, b = train_frame(2), train_frame(2)
    b.loc[1, "content"] = "another tweet with the same id (ids are per-file row numbers in some files)"
    a.to_csv(tmp_path / "a.csv", index=False)
    b.to_csv(tmp_path / "b.csv", index=False)
    table, rejects, read = load_sources(tmp_path)
    assert read == 4 and len(table) == 3
    assert sorted(zip(table["source"], table["id"])) == [("a", 1), ("a", 2), ("b", 2)]
    [r] = rejects.to_dict("records")
    assert r["source"].endswith("b.csv") and r["row"] == 2 and r["field"] == "id"
    assert "a.csv row 2" in r["reason"]
