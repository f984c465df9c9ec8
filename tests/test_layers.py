"""The library's packages are layers and imports point one way: a module imports from its own
package or from a lower layer, never from a sibling or a higher one, and no modules import each
other in a cycle. Dynamic imports (importlib.import_module("tweetsim...")) count too. Apart from
apps/ (the commands) and pipeline/stage.py (the stages' entry), no module ends the process.

The stage scripts (stages/*.py) sit on the library: they import its packages, never tweetsim.apps
(what users run), and each is thin: no function of a stage longer than STAGE_FUNCTION_LINES."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "tweetsim"
# lower number = lower layer; packages of one layer are siblings and must not import each other
LAYERS = {"config": 0, "data": 1, "vision": 2, "text": 2, "lm": 3, "likes": 4, "writer": 4, "pipeline": 5, "apps": 6}
MODULES = sorted(p for p in LIB.rglob("*.py") if "__pycache__" not in p.parts)
ENTRIES = {"tweetsim.pipeline.stage"}  # the stages' entry: a StageError or Ctrl-C ends the stage there
STAGES = sorted((ROOT / "stages").glob("*.py"))
STAGE_FUNCTION_LINES = 45  # a stage reads its params, calls the library, writes its outputs


def dotted(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, known_only: bool = True) -> set[str]:
    """Dotted tweetsim names imported by the file: modules, packages, and `from package import module`
    (with `known_only`, those that name a module or package of the library)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tweetsim"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("tweetsim")}
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).startswith("tweetsim")):
            found.add(node.args[0].value)
    if not known_only:
        return found
    known = {dotted(p) for p in MODULES}
    return {name for name in found if name in known and name != "tweetsim"}


def package(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_module_is_in_a_layer():
    top = [p.name for p in LIB.glob("*.py")]
    assert sorted(top) == ["__init__.py", "__main__.py"], f"modules outside the packages: {top}"
    pkgs = {p.parent.name for p in LIB.glob("*/__init__.py")}
    assert pkgs == set(LAYERS), f"packages without a layer, or layers without a package: {pkgs ^ set(LAYERS)}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_imports_point_down(path):
    own = package(dotted(path))
    if own not in LAYERS:  # tweetsim/__main__.py: the entry point, above everything
        return
    bad = [name for name in imports(path)
           if package(name) != own and LAYERS[package(name)] >= LAYERS[own]]
    assert not bad, f"{path.relative_to(ROOT)} (layer {own}) imports {bad}: same-layer or higher"


def test_no_import_cycles():
    graph = {dotted(p): {n for n in imports(p) if n != dotted(p)} for p in MODULES}
    done, stack = set(), []

    def visit(node):
        if node in stack:
            raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(node):] + [node]))
        if node in done:
            return
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            visit(nxt)
        stack.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_library_never_exits_the_process(path):
    if package(dotted(path)) not in LAYERS or package(dotted(path)) == "apps" or dotted(path) in ENTRIES:
        return  # the entry points end the process
    for node in ast.walk(ast.parse(path.read_text())):
        name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
        assert name not in ("SystemExit", "exit", "_exit"), (
            f"{path.relative_to(ROOT)}:{node.lineno} uses {name}: raise an error and let the command or stage end")


def private_uses(path: Path) -> list[str]:
    """Another tweetsim module's private names the file uses: `from tweetsim.x import _name`, or
    `mod._name` where `mod` is bound to a tweetsim module (`import tweetsim.x as mod`, `from tweetsim import x`)."""
    known = {dotted(p) for p in MODULES}
    own = dotted(path) if path.is_relative_to(LIB) else None
    aliases, found = {}, []
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tweetsim"):
            for a in node.names:
                if f"{node.module}.{a.name}" in known:
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
                elif a.name.startswith("_") and not a.name.startswith("__") and node.module != own:
                    found.append(f"{node.module}.{a.name}")
        elif isinstance(node, ast.Import):
            aliases |= {a.asname: a.name for a in node.names if a.asname and a.name in known}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__") and aliases[node.value.id] != own):
            found.append(f"{aliases[node.value.id]}.{node.attr}")
    return sorted(set(found))


@pytest.mark.parametrize("path", MODULES + sorted((ROOT / "stages").glob("*.py")), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_module_uses_another_modules_private_names(path):
    bad = private_uses(path)
    assert not bad, (f"{path.relative_to(ROOT)} uses {bad}: make the helper public in the module that owns it, "
                     "or move it to the one that uses it")


def test_private_use_check_sees_one(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("from tweetsim.lm import prompts as P\nfrom tweetsim.likes.regressor import _x\nP._clip('a', 3)\nP.clip('a', 3)\n")
    assert private_uses(f) == ["tweetsim.likes.regressor._x", "tweetsim.lm.prompts._clip"]


@pytest.mark.parametrize("path", STAGES, ids=lambda p: p.name)
def test_a_stage_imports_the_library_but_never_the_apps(path):
    names = imports(path, known_only=False)
    assert names, f"stages/{path.name} imports nothing of tweetsim"
    bad = sorted(n for n in names if n == "tweetsim.apps" or n.startswith("tweetsim.apps."))
    assert not bad, f"stages/{path.name} imports {bad}: a stage sits below the commands; move what it needs into the library"
    unknown = sorted(n for n in names if package(n) not in LAYERS)
    assert not unknown, f"stages/{path.name} imports {unknown}, outside the library's packages"


@pytest.mark.parametrize("path", STAGES, ids=lambda p: p.name)
def test_a_stage_is_thin(path):
    long = [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > STAGE_FUNCTION_LINES]
    assert not long, (f"stages/{path.name}: {long} longer than {STAGE_FUNCTION_LINES} lines (name, lines): move the work "
                      "into a library function the stage calls, as stages/deploy_likes.py does")
