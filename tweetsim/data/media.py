"""Parse the official `media` column into structured items.

The column holds the Python repr of snscrape objects, e.g.
`[Photo(previewUrl='...', fullUrl='...')]` or
`[Video(thumbnailUrl='...', variants=[VideoVariant(contentType='video/mp4', url='...', bitrate=832000)], duration=10.5, views=1234)]`.
We parse it with Python's own grammar (`ast.parse`) and accept only the node shapes above: a list
of known constructor calls with keyword arguments whose values are literals. Nothing is evaluated,
so a hostile or garbled string can only be rejected, never run.
"""

import ast
import math

KINDS = ("Photo", "Video", "Gif")
FIELDS = {
    "Photo": {"previewUrl", "fullUrl"},
    "Video": {"thumbnailUrl", "variants", "duration", "views"},
    "Gif": {"thumbnailUrl", "variants"},
    "VideoVariant": {"contentType", "url", "bitrate"},
}
EMPTY = {"", "[]", "nan", "none", "null"}
TEXT_FIELDS = {"previewUrl", "fullUrl", "thumbnailUrl", "contentType", "url"}
MAX_CHARS = 100_000      # a real cell is a few hundred characters; longer ones are refused before parsing
INT64_MAX = 2**63 - 1    # every count (views, bitrate) and duration must fit the table's int64 / float64 columns


class MediaParseError(ValueError):
    pass


def _literal(node: ast.AST, where: str):
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            node.value.encode("utf-8")  # a lone surrogate escape ('\\ud800') cannot be stored
        except UnicodeEncodeError:
            raise MediaParseError(f"{where}: a string that is not valid Unicode") from None
        return node.value
    if isinstance(node, ast.Constant) and (node.value is None or type(node.value) in (int, float)):
        return node.value
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant)
            and type(node.operand.value) in (int, float)):
        return -node.operand.value
    raise MediaParseError(f"{where}: expected a literal, got {type(node).__name__}")


def _call(node: ast.AST, allowed: tuple[str, ...], where: str) -> tuple[str, dict]:
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in allowed):
        raise MediaParseError(f"{where}: expected one of {', '.join(allowed)}(...)")
    name = node.func.id
    if node.args:
        raise MediaParseError(f"{where}: {name} takes keyword arguments only")
    kwargs = {}
    for kw in node.keywords:
        if kw.arg not in FIELDS[name]:
            raise MediaParseError(f"{where}: unknown field {name}.{kw.arg}")
        if kw.arg == "variants":
            if not isinstance(kw.value, ast.List):
                raise MediaParseError(f"{where}: {name}.variants must be a list")
            kwargs["variants"] = [
                _call(v, ("VideoVariant",), f"{where}.variants[{j}]")[1] for j, v in enumerate(kw.value.elts)
            ]
        else:
            value = _literal(kw.value, f"{where}.{kw.arg}")
            if kw.arg in TEXT_FIELDS and value is not None and not isinstance(value, str):
                raise MediaParseError(f"{where}.{kw.arg}: expected a string, got {_short(value)}")
            kwargs[kw.arg] = value
    return name, kwargs


def _num(value, where: str, exact: bool = False) -> float | int | None:
    """A count or duration: finite, non-negative, at most int64's maximum; else MediaParseError.
    A float, or with `exact` the value itself (a bitrate stays an exact int)."""
    if value is None:
        return None
    if type(value) not in (int, float):
        raise MediaParseError(f"{where}: expected a non-negative number, got {_short(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise MediaParseError(f"{where}: not a finite number ({value!r})")
    if not 0 <= value <= INT64_MAX:
        raise MediaParseError(f"{where}: expected a non-negative number up to {INT64_MAX}, got {_short(value)}")
    return value if exact else float(value)


def _short(value) -> str:
    r = repr(value) if not isinstance(value, int) or value.bit_length() < 200 else f"a {int(value.bit_length() * 0.30103) + 1}-digit number"
    return r if len(r) <= 60 else r[:57] + "..."


def parse_media(text) -> list[dict]:
    """Return a list of items {kind, preview_url, full_url, thumbnail_url, variants, duration, views}.

    An empty cell means no media. Raises MediaParseError with the offending position otherwise.
    """
    if text is None or (isinstance(text, float) and text != text):
        return []
    s = str(text).strip()
    if s.lower() in EMPTY:
        return []
    if len(s) > MAX_CHARS:
        raise MediaParseError(f"not a media list: {len(s)} characters (at most {MAX_CHARS})")
    try:
        tree = ast.parse(s, mode="eval").body
    except SyntaxError as e:
        if "integer string conversion" in str(e.msg):  # Python's own cap on the digits of a literal
            raise MediaParseError("not a media list: a number of more than 4300 digits") from None
        raise MediaParseError(f"not a media list: syntax error at column {e.offset}") from None
    except (MemoryError, RecursionError, ValueError):  # nesting too deep for the parser; a NUL byte
        raise MediaParseError("not a media list: too deeply nested or contains a NUL byte") from None
    if not isinstance(tree, ast.List):
        raise MediaParseError("not a media list: expected [...]")
    items = []
    for i, node in enumerate(tree.elts):
        kind, kw = _call(node, KINDS, f"item {i}")
        variants = [
            {
                "content_type": v.get("contentType"),
                "url": v.get("url"),
                "bitrate": None if v.get("bitrate") is None else int(_num(v.get("bitrate"), f"item {i}.bitrate", exact=True)),
            }
            for v in kw.get("variants", [])
        ]
        item = {
            "kind": kind,
            "preview_url": kw.get("previewUrl"),
            "full_url": kw.get("fullUrl"),
            "thumbnail_url": kw.get("thumbnailUrl"),
            "variants": variants,
            "duration": _num(kw.get("duration"), f"item {i}.duration"),
            "views": _num(kw.get("views"), f"item {i}.views"),
        }
        if not image_url(item):
            raise MediaParseError(f"item {i}: {kind} has no image URL")
        items.append(item)
    return items


def image_url(item: dict) -> str | None:
    """The URL worth fetching for an item: the photo itself, or the video/GIF thumbnail."""
    if item["kind"] == "Photo":
        return item.get("full_url") or item.get("preview_url")
    return item.get("thumbnail_url")


def summarise(items: list[dict]) -> dict:
    """Flat per-row media columns used by features and prompts."""
    durations = [it["duration"] for it in items if it.get("duration") is not None]
    views = [it["views"] for it in items if it.get("views") is not None]
    return {
        "n_media": len(items),
        "n_photo": sum(it["kind"] == "Photo" for it in items),
        "n_video": sum(it["kind"] == "Video" for it in items),
        "n_gif": sum(it["kind"] == "Gif" for it in items),
        "video_duration": max(durations) if durations else None,
        "video_views": sum(views) if views else None,
        "image_urls": [image_url(it) for it in items],
    }


def media_kind(row) -> str:
    """One word for prompts: the kinds present, e.g. 'photo', 'video', 'photo+gif', or 'none'."""
    kinds = [k.lower() for k, n in (("Photo", row["n_photo"]), ("Video", row["n_video"]), ("Gif", row["n_gif"])) if n]
    return "+".join(kinds) or "none"
