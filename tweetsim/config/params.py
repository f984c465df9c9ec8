"""params.yaml access: stages read their section straight from the file (no DVC needed).

Strict, against a schema that is not the file being checked: `params_schema.yaml` beside this
module, the key tree of the shipped params.yaml with a type name at each leaf (`int`, `float`,
`bool`, `str`, `list`, `any` where the default is null). A params file edited by hand or by
`dvc exp run -S` (`+split.sed=3`, `split.seed=abc`) is checked against it: a key it does not have is
an error naming the section, the key and the closest known one; a key it has must be there, with a
value of its type (an int is a float too; null is allowed anywhere). The schema changes only on
purpose: `python scripts/params_schema.py` regenerates it from params.yaml, and a
test keeps the two in step. The typed configs of the code (config dataclasses) are built from a
checked section by `from_section`, which takes every field from it: no second set of defaults in code;
the config of a whole section is declared with `section_config`, which gives it `from_params`.
"""

import dataclasses
import difflib
import types
import typing
from pathlib import Path

import yaml

SCHEMA_PATH = Path(__file__).resolve().with_name("params_schema.yaml")
TYPES = {bool: "bool", int: "int", float: "float", str: "str", list: "list"}
_EXAMPLE = {"bool": True, "int": 0, "float": 0.0, "str": "", "list": []}


class StageError(Exception):
    """An error that a stage or command reports as its one line (`str(e)`), with no traceback: the
    entry points (tweetsim.pipeline.stage, tweetsim.apps.cli) turn it into the exit status."""


class ParamsError(StageError):
    """A params file that cannot be used."""


def _read(path: str | Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except OSError as e:
        raise ParamsError(f"params: cannot read {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ParamsError(f"params: {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ParamsError(f"params: {path} must be a mapping of sections, got {type(data).__name__}")
    return data


def unknown_keys(params: dict, schema: dict, prefix: str = "") -> list[str]:
    """One message per key of `params` that `schema` lacks, recursing where both sides are mappings."""
    problems = []
    for key, value in params.items():
        where = f"{prefix}{key}"
        if key not in schema:
            close = difflib.get_close_matches(str(key), [str(k) for k in schema], n=1, cutoff=0.5)
            section = prefix[:-1] or "top level"
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; known: {', '.join(map(str, schema))}"
            problems.append(f"unknown key '{where}' in section '{section}'{hint}")
        elif isinstance(value, dict) and isinstance(schema[key], dict):
            problems += unknown_keys(value, schema[key], f"{where}.")
    return problems


def schema_of(params: dict) -> dict:
    """The schema of a params tree: the same keys, a type name at each leaf (null -> any)."""
    return {k: schema_of(v) if isinstance(v, dict) else "any" if v is None else TYPES[type(v)] for k, v in params.items()}


def _type_name(value) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a mapping"}.get(type(value), type(value).__name__)


def _same_type(value, expected: str) -> bool:
    if value is None or expected == "any":
        return True
    if isinstance(value, bool) or expected == "bool":
        return isinstance(value, bool) and expected == "bool"
    if expected == "float":
        return isinstance(value, (int, float))
    return TYPES.get(type(value)) == expected


def type_problems(params: dict, schema: dict, prefix: str = "") -> list[str]:
    """One message per key of `schema` that `params` lacks, or holds with a value of another type."""
    problems = []
    for key, expected in schema.items():
        where = f"{prefix}{key}"
        if key not in params:
            problems.append(f"missing key '{where}' (the params schema has it)")
        elif isinstance(expected, dict) != isinstance(params[key], dict) or \
                (not isinstance(expected, dict) and not _same_type(params[key], expected)):
            want = "a mapping" if isinstance(expected, dict) else _type_name(_EXAMPLE[expected])
            problems.append(f"'{where}' is {_type_name(params[key])} ({params[key]!r}), expected {want}")
        elif isinstance(expected, dict) and isinstance(params[key], dict):
            problems += type_problems(params[key], expected, f"{where}.")
    return problems


def check(params: dict, path: str | Path = "params.yaml", schema_path: str | Path = SCHEMA_PATH) -> None:
    """Raise ParamsError for the first unknown, missing or mistyped key (and count the others)."""
    schema = _read(schema_path)
    problems = unknown_keys(params, schema) + type_problems(params, schema)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ParamsError(f"params: {path}: {problems[0]}{more}")


def load_params(path: str | Path = "params.yaml") -> dict:
    params = _read(path)
    check(params, path)
    return params


def section(name: str, path: str | Path = "params.yaml") -> dict:
    params = load_params(path)
    if name not in params:
        raise ParamsError(f"params: {path}: no '{name}' section")
    return params[name]


def from_section(cls, section_name: str, p: dict, ignore: tuple[str, ...] = ()):
    """The config dataclass `cls` from a (checked) params section: every field from `p`, none from code.
    Keys of `p` that are not fields are errors unless listed in `ignore` (keys of the section that
    other code reads), so a config cannot silently drop a key. A field typed as a config dataclass is
    built the same way from its subsection (`section.field`), a `dict[str, <config>]` field per key."""
    if not isinstance(p, dict):
        raise ParamsError(f"params: section '{section_name}' must be a mapping, got {type(p).__name__} ({p!r})")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(p) - set(names) - set(ignore))  # first: a misspelt key is also a missing one
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), names, n=1, cutoff=0.5)
        hint = f"; did you mean '{section_name}.{close[0]}'?" if close else ""
        raise ParamsError(f"params: unknown key '{section_name}.{unknown[0]}' for {cls.__name__}{hint}")
    missing = [n for n in names if n not in p]
    if missing:
        raise ParamsError(f"params: section '{section_name}' lacks {missing} ({cls.__name__} needs them)")
    hints = typing.get_type_hints(cls)
    return cls(**{n: _nested(hints[n], f"{section_name}.{n}", p[n]) for n in names})


@typing.dataclass_transform(frozen_default=True)
def section_config(name: str):
    """Class decorator: the class as the frozen config dataclass of params.yaml section `name`, whose
    `from_params(p)` builds it from that section by from_section (the section named once, here)."""

    def make(cls):
        cls = dataclasses.dataclass(frozen=True)(cls)
        cls.from_params = classmethod(lambda c, p: from_section(c, name, p))
        return cls

    return make


def _config_class(tp):
    """The config dataclass of a field's type (`X` or `X | None`), else None."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0] if len(args) == 1 else None
    return tp if isinstance(tp, type) and dataclasses.is_dataclass(tp) else None


def _nested(tp, name: str, value):
    """A field's value: a subsection built into its config (None stays None), anything else as given."""
    if value is None:
        return None
    sub = _config_class(tp)
    if sub is not None:
        return from_section(sub, name, value)
    if typing.get_origin(tp) is dict and len(typing.get_args(tp)) == 2:
        sub = _config_class(typing.get_args(tp)[1])
        if sub is not None:
            if not isinstance(value, dict):
                raise ParamsError(f"params: '{name}' must be a mapping, got {type(value).__name__} ({value!r})")
            return {k: from_section(sub, f"{name}.{k}", v) for k, v in value.items()}
    return value


def write_schema(params_path: str | Path = "params.yaml", schema_path: str | Path = SCHEMA_PATH) -> None:
    """Regenerate the schema from a params file (after adding or retyping a key on purpose)."""
    header = "# keys and types of params.yaml; regenerate: python scripts/params_schema.py\n"
    Path(schema_path).write_text(header + yaml.safe_dump(schema_of(_read(params_path)), sort_keys=False), encoding="utf-8")

