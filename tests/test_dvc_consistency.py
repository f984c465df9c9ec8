"""dvc.yaml and the code agree: every stage's script and the library modules it imports are deps,
and every params section or key a stage reads is declared under its `params:` and exists."""

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
# a foreach stage is checked through its `do` template, a matrix stage (caption_shard@K) through
# its own fields, which are the template of each generated stage
STAGES = {name: stage.get("do", stage) for name, stage in DVC["stages"].items()}


def _module_file(dotted: str) -> str:
    """A module's repo path: tweetsim/x.py, or a package's tweetsim/x/__init__.py."""
    base = dotted.replace(".", "/")
    return f"{base}/__init__.py" if (ROOT / base / "__init__.py").exists() else f"{base}.py"


def tweetsim_imports(path: Path) -> set[str]:
    """tweetsim modules imported anywhere in the file (also inside functions), as repo paths; a
    package import counts its __init__.py, `from package import module` the module too."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tweetsim":
            found.add(_module_file(node.module))
            found |= {_module_file(f"{node.module}.{a.name}") for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {_module_file(a.name) for a in node.names if a.name.startswith("tweetsim.")}
    return {f for f in found if (ROOT / f).exists() and not _docstring_only(ROOT / f)}


def _docstring_only(path: Path) -> bool:
    """A package's __init__.py that holds only its docstring is no code a stage depends on."""
    body = ast.parse(path.read_text()).body
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def closure(path: Path) -> set[str]:
    seen, todo = set(), [path]
    while todo:
        for mod in tweetsim_imports(todo.pop()):
            if mod not in seen:
                seen.add(mod)
                todo.append(ROOT / mod)
    return seen


def stage_script(name: str, stage: dict) -> Path:
    m = re.search(r"stages/\w+\.py", stage["cmd"])
    assert m, f"stage {name}: cmd does not run a stages/*.py script"
    return ROOT / m.group(0)


def declared_params(stage: dict) -> set[str]:
    out = set()
    for entry in stage.get("params", []):
        out |= set(entry) if isinstance(entry, dict) else {entry}
    return out


@pytest.mark.parametrize("name", sorted(STAGES))
def test_script_and_library_modules_are_deps(name):
    stage = STAGES[name]
    script = stage_script(name, stage)
    deps = set(stage.get("deps", []))
    needed = {script.relative_to(ROOT).as_posix()} | closure(script)
    # a folder dep (a package) covers every file under it
    missing = {f for f in needed - deps if not any(f.startswith(d.rstrip("/") + "/") for d in deps)}
    assert not missing, f"stage {name}: add to deps: {sorted(missing)}"
    # a library module the stage does not import is no dep: editing it must not re-run the stage
    extra = {d for d in deps if d.startswith("tweetsim/") and d.endswith(".py")} - needed
    assert not extra, f"stage {name}: not imported, drop from deps: {sorted(extra)}"
    assert len(stage.get("deps", [])) == len(deps), f"stage {name}: a dep is listed twice"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_params_read_are_declared_and_exist(name):
    stage = STAGES[name]
    text = stage_script(name, stage).read_text()
    declared = declared_params(stage)
    # sections: section("x") / params["x"] / params["x"]["y"]
    variables = {}
    for var, sec in re.findall(r'(\w+)\s*=\s*section\("(\w+)"', text):
        variables[var] = sec
    for var, sec in re.findall(r'(\w+)\s*=\s*params\["(\w+)"\]\s*$', text, flags=re.M):
        variables[var] = sec
    for var, sec in re.findall(r'(\w+),\s*\w+\s*=\s*params\["(\w+)"\]', text):
        variables[var] = sec
    used = set(variables.values())
    for sec, key in re.findall(r'params\["(\w+)"\]\["(\w+)"\]', text):
        used.add(f"{sec}.{key}")
    for dotted in used:
        head = dotted.split(".")[0]
        assert dotted in declared or head in declared, f"stage {name} reads params '{dotted}' but does not declare it"
        node = PARAMS
        for part in dotted.split("."):
            assert part in node, f"stage {name} reads '{dotted}', missing from params.yaml"
            node = node[part]
    for var, sec in variables.items():
        for key in re.findall(rf'\b{var}\["(\w+)"\]|\b{var}\.get\("(\w+)"', text):
            key = key[0] or key[1]
            assert key in PARAMS[sec], f"stage {name} reads {sec}.{key}, missing from params.yaml"


def test_every_declared_param_and_source_dep_exists():
    for name, stage in STAGES.items():
        for dotted in declared_params(stage):
            node = PARAMS
            for part in dotted.split("."):
                assert part in node, f"stage {name} declares params '{dotted}', missing from params.yaml"
                node = node[part]
        for dep in stage.get("deps", []):
            if dep.startswith(("stages/", "tweetsim/")):
                assert (ROOT / dep).exists(), f"stage {name}: dep {dep} does not exist"


def test_dvc_expands_the_shard_matrices(tmp_path):
    """dvc parses dvc.yaml: with caption.shards [0, 1, 2] it lists caption_shard@0..@2 (ocr_shard@0 with
    ocr.shards [0]), each writing its own file, and the merge stages depend on them all."""
    import subprocess
    import sys

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["caption"]["shards"] = [0, 1, 2]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "dvc.yaml").write_text((ROOT / "dvc.yaml").read_text())
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run(dvc + ["init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    names = subprocess.run(dvc + ["stage", "list", "--name-only"], cwd=tmp_path, check=True, capture_output=True,
                           text=True).stdout.split()
    assert [n for n in names if "_shard@" in n] == ["caption_shard@0", "caption_shard@1", "caption_shard@2", "ocr_shard@0"]
    dag = subprocess.run(dvc + ["dag", "--md", "caption"], cwd=tmp_path, check=True, capture_output=True, text=True).stdout
    assert all(f"caption_shard@{k}" in dag for k in range(3))
