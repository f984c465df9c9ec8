"""The headline metrics of two runs side by side, as a Markdown table of what changed.
usage: python scripts/headline_diff.py BASE.json HEAD.json
Prints "No headline metric changed." when every value is equal (both runs made on one machine, so
any difference is the change's, not the CPU's)."""

import json
import sys


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.update(flat(v, key) if isinstance(v, dict) else {key: v})
    return out


def diff(base: dict, head: dict) -> list[tuple[str, object, object, str]]:
    """(metric, base, head, relative change) for every metric whose value differs or exists on one side only."""
    a, b = flat(base), flat(head)
    rows = []
    for key in sorted(a.keys() | b.keys()):
        x, y = a.get(key), b.get(key)
        if x == y:
            continue
        num = isinstance(x, (int, float)) and isinstance(y, (int, float))
        rel = f"{(y - x) / abs(x):+.2%}" if num and x else "—"
        rows.append((key, "—" if x is None else x, "—" if y is None else y, rel))
    return rows


def markdown(rows) -> str:
    if not rows:
        return "No headline metric changed."
    lines = ["| metric | base | head | change |", "|---|---|---|---|"]
    lines += [f"| {k} | {x} | {y} | {r} |" for k, x, y, r in rows]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit(__doc__.splitlines()[1])
    base, head = (json.loads(open(p).read()) for p in argv)
    print(markdown(diff(base, head)))


if __name__ == "__main__":
    main(sys.argv[1:])
