"""params.yaml access: stages read their section straight from the file (no DVC needed).

Strict: a key that the repository's own params.yaml (the file that ships with the code, the schema)
does not have is an error naming the section, the key and the closest known one, so a misspelt
`split.sed` stops the run at once instead of being ignored. Missing keys are not checked here.
"""

import difflib
from pathlib import Path

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "params.yaml"


class ParamsError(SystemExit):
    """A params file that cannot be used. A SystemExit, so a stage or command ends with this one line
    (no traceback); its text is `str(e)`."""

    def __str__(self) -> str:
        return str(self.code)


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


def check(params: dict, path: str | Path = "params.yaml", schema_path: str | Path = SCHEMA_PATH) -> None:
    """Raise ParamsError for the first unknown key (and count the others); no-op without a schema file."""
    if not Path(schema_path).is_file():
        return
    problems = unknown_keys(params, _read(schema_path))
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
