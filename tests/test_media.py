import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tweetsim.data.media import MediaParseError, image_url, parse_media, summarise

from conftest import SAMPLE


@pytest.fixture(scope="module")
def real_media():
    """Real media strings of every kind, from the embedded sample."""
    df = pd.read_excel(SAMPLE / "official" / "content_simulation_test_time.xlsx", dtype=object)
    train = pd.read_csv(SAMPLE / "train_rows" / "train_rows_200_with_captions.csv", dtype=str)
    return pd.concat([df["media"], train["media"]]).astype(str).tolist()


def first(strings, prefix):
    return next(s for s in strings if s.startswith(prefix))


def test_real_photo(real_media):
    s = first(real_media, "[Photo(")
    items = parse_media(s)
    assert items[0]["kind"] == "Photo"
    assert items[0]["full_url"].startswith("https://pbs.twimg.com/") and "name=large" in items[0]["full_url"]
    assert image_url(items[0]) == items[0]["full_url"]


def test_real_video_has_variants_duration_views(real_media):
    items = parse_media(first(real_media, "[Video("))
    v = items[0]
    assert v["kind"] == "Video" and v["thumbnail_url"].startswith("https://")
    assert v["duration"] > 0 and v["views"] is not None
    types = {x["content_type"] for x in v["variants"]}
    assert "video/mp4" in types
    assert any(x["bitrate"] is None for x in v["variants"]) or all(x["bitrate"] >= 0 for x in v["variants"])
    assert image_url(v) == v["thumbnail_url"]


def test_real_gif(real_media):
    g = parse_media(first(real_media, "[Gif("))[0]
    assert g["kind"] == "Gif" and g["variants"][0]["bitrate"] == 0 and g["duration"] is None


def test_every_real_string_parses_and_multi_item_rows_exist(real_media):
    parsed = [parse_media(s) for s in real_media]
    assert sum(len(p) > 1 for p in parsed) > 10
    kinds = {it["kind"] for p in parsed for it in p}
    assert kinds == {"Photo", "Video", "Gif"}


def test_summary_counts():
    s = ("[Photo(previewUrl='https://a/p?name=small', fullUrl='https://a/p?name=large'), "
         "Video(thumbnailUrl='https://a/t.jpg', variants=[VideoVariant(contentType='video/mp4', url='https://v', bitrate=832000)], duration=12.5, views=300), "
         "Video(thumbnailUrl='https://a/u.jpg', variants=[], duration=3.0, views=None)]")
    summ = summarise(parse_media(s))
    assert (summ["n_media"], summ["n_photo"], summ["n_video"], summ["n_gif"]) == (3, 1, 2, 0)
    assert summ["video_duration"] == 12.5 and summ["video_views"] == 300
    assert summ["image_urls"] == ["https://a/p?name=large", "https://a/t.jpg", "https://a/u.jpg"]


@pytest.mark.parametrize("empty", [None, float("nan"), "", "[]", "nan", "  "])
def test_empty_is_no_media(empty):
    assert parse_media(empty) == []


@pytest.mark.parametrize("bad,needle", [
    ("[Photo(previewUrl='x'", "syntax"),
    ("Photo(previewUrl='x')", "expected [...]"),
    ("[Audio(url='x')]", "expected one of"),
    ("[Photo(previewUrl='x', colour='red')]", "unknown field"),
    ("[Photo(previewUrl=__import__('os').system('echo hacked'))]", "expected a literal"),
    ("[Photo('https://x')]", "keyword arguments only"),
    ("[Video(thumbnailUrl='t', variants='none')]", "must be a list"),
    ("[Video(thumbnailUrl='t', duration=-3)]", "non-negative"),
    ("[Photo()]", "no image URL"),
])
def test_malformed_strings_are_rejected_with_a_reason(bad, needle):
    with pytest.raises(MediaParseError, match=needle.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        parse_media(bad)


urls = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/:.?=&_-'\"\\", min_size=1, max_size=40)
variant = st.builds(lambda ct, u, b: f"VideoVariant(contentType={ct!r}, url={u!r}, bitrate={b!r})",
                    st.sampled_from(["video/mp4", "application/x-mpegURL"]), urls, st.one_of(st.none(), st.integers(0, 10**7)))
item = st.one_of(
    st.builds(lambda a, b: f"Photo(previewUrl={a!r}, fullUrl={b!r})", urls, urls),
    st.builds(lambda t, vs, d, v: f"Video(thumbnailUrl={t!r}, variants=[{', '.join(vs)}], duration={d!r}, views={v!r})",
              urls, st.lists(variant, max_size=3), st.floats(0, 1e4, allow_nan=False), st.one_of(st.none(), st.integers(0, 10**9))),
    st.builds(lambda t, vs: f"Gif(thumbnailUrl={t!r}, variants=[{', '.join(vs)}])", urls, st.lists(variant, max_size=2)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(item, max_size=4))
def test_generated_reprs_round_trip(items):
    parsed = parse_media("[" + ", ".join(items) + "]")
    assert len(parsed) == len(items)
    for text, it in zip(items, parsed):
        assert text.startswith(it["kind"] + "(")
        assert image_url(it) is not None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_text_never_crashes(text):
    try:
        parse_media(text)
    except MediaParseError:
        pass
