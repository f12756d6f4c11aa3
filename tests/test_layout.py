"""The package's layout, read from its source with `ast` (nothing is imported or run).

- No import circles, counting imports inside functions too.
- Imports go down the tiers below, never up or sideways (README "Layout" draws them).
- Outside `server/` only `client.py` and `cli.py` import the server; `server/` imports nothing
  of the client but `catalog.py`, the vocabulary both share.
- An import inside a function is only there to defer a heavy module (its own top-level imports
  reach one of HEAVY), and says so in a `# deferred: why` comment.
- No two modules share a file name.
"""
import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gemini_magics"

# Client modules by tier, top first: a module imports only modules of lower tiers; modules of
# the core tier may import each other (without circles). A new module must be placed here.
TIERS = {
    7: {"__main__"},
    6: {"cli"},
    5: {"__init__", "quickstart"},
    4: {"magics"},
    3: {"widgets", "jobs", "batch"},
    2: {"live", "display", "rows"},
    1: {"runner", "cell"},
    0: {"request", "args", "options", "stream", "sender", "conversation", "result", "client", "render",
        "loop", "errors", "prompt", "media", "images", "tools", "functions", "schema", "replay",
        "catalog", "server_process", "rowcache"},
}
CORE = 0
SHARED = "catalog"                 # the one client module server/ may import
SERVER_USERS = {"client", "cli"}   # the client modules that may import server/
# Third-party modules slow enough to defer (measured with python -X importtime).
HEAVY = {"google.genai", "ipywidgets", "PIL", "xllamacpp", "httpx", "jsonschema", "pydantic",
         "nbclient", "nbformat", "jupyter_client", "uvicorn", "starlette", "IPython", "traitlets",
         "jupyterlab", "numpy", "pandas", "tqdm"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _resolve(importer: str, path: Path, node: ast.ImportFrom) -> list:
    """The package modules (or third-party module names) a `from ... import` names."""
    if node.level == 0:
        base = node.module or ""
    else:
        package = importer.split(".") if path.name == "__init__.py" else importer.split(".")[:-1]
        package = package[:len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    if not base.startswith("gemini_magics"):  # third party: `from google import genai`
        return [f"{base}.{alias.name}" for alias in node.names]
    out = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        out.append(sub if sub in MODULES else base)
    return out


def _imports(name: str, path: Path) -> list:
    """(imported module, line, inside a function) for every import statement of a module."""
    tree = ast.parse(path.read_text(), str(path))
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                found.extend((m, child.lineno, in_function) for m in _resolve(name, path, child))
            else:
                visit(child, inner)

    visit(tree, False)
    return found


IMPORTS = {name: _imports(name, path) for name, path in MODULES.items()}


def _internal(target: str) -> str:
    """The package module an import reaches (a name inside a module counts as the module)."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target


def _short(module: str) -> str:
    return module.split(".", 1)[1] if "." in module else "__init__"


def _tier(module: str) -> int:
    short = _short(module)
    for tier, names in TIERS.items():
        if short in names:
            return tier
    raise AssertionError(f"{module} is in no tier of tests/test_layout.py: place it there")


def _in_server(module: str) -> bool:
    return module == "gemini_magics.server" or module.startswith("gemini_magics.server.")


def _edges(top_level_only: bool = False) -> dict:
    graph = defaultdict(set)
    for name, found in IMPORTS.items():
        for target, _, in_function in found:
            if top_level_only and in_function:
                continue
            inner = _internal(target)
            if inner and inner != name and inner.startswith("gemini_magics"):
                # a module importing its own package's __init__ for a submodule is not an edge
                if not name.startswith(inner + ".") or inner == "gemini_magics":
                    graph[name].add(inner)
    return graph


def test_the_package_has_modules_to_check():
    assert {"gemini_magics.magics", "gemini_magics.render", "gemini_magics.server.app"} <= set(MODULES)


def test_there_is_no_import_circle():
    graph = _edges()
    state: dict = {}
    stack: list = []

    def walk(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                circle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import circle: " + " -> ".join(circle))
            if nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(MODULES):
        if node not in state:
            walk(node)


def test_client_imports_go_down_the_tiers():
    wrong = []
    for name, targets in _edges().items():
        if _in_server(name) or name == "gemini_magics":
            continue
        for target in targets:
            if _in_server(target):
                continue
            if target == "gemini_magics":
                wrong.append(f"{name} imports the package's __init__")
                continue
            a, b = _tier(name), _tier(target)
            if a < b or (a == b and a != CORE):
                wrong.append(f"{name} (tier {a}) imports {target} (tier {b})")
    assert not wrong, "imports against the tiers:\n" + "\n".join(sorted(wrong))


def test_only_the_client_and_the_cli_reach_the_server_and_the_server_only_the_catalog():
    wrong = []
    for name, targets in _edges().items():
        for target in targets:
            if not _in_server(name) and _in_server(target) and _short(name) not in SERVER_USERS:
                wrong.append(f"{name} imports {target}")
            if _in_server(name) and not _in_server(target) and _short(target) != SHARED:
                wrong.append(f"{name} imports the client's {target}")
    assert not wrong, "\n".join(sorted(wrong))


def _heavy_closure() -> dict:
    """For each package module: does importing it load a HEAVY third-party module?"""
    top = defaultdict(set)
    heavy_direct = set()
    for name, found in IMPORTS.items():
        for target, _, in_function in found:
            if in_function:
                continue
            if any(target == h or target.startswith(h + ".") for h in HEAVY):
                heavy_direct.add(name)
            inner = _internal(target)
            while inner and inner != name:  # importing a submodule runs its packages too
                top[name].add(inner)
                inner = inner.rpartition(".")[0]
    heavy = set(heavy_direct)
    changed = True
    while changed:
        changed = False
        for name, targets in top.items():
            if name not in heavy and targets & heavy:
                heavy.add(name)
                changed = True
    return {name: name in heavy for name in MODULES}


def test_imports_inside_functions_only_defer_heavy_modules_and_say_so():
    heavy = _heavy_closure()
    wrong = []
    for name, found in IMPORTS.items():
        lines = MODULES[name].read_text().splitlines()
        for target, line, in_function in found:
            if not in_function:
                continue
            where = f"{MODULES[name].relative_to(PACKAGE.parent)}:{line}"
            inner = _internal(target)
            # importing a submodule runs its packages' __init__ too
            chain = [inner] + [inner.rsplit(".", i)[0] for i in range(1, inner.count("."))]
            is_heavy = (any(heavy.get(m, False) for m in chain) if inner
                        else any(target == h or target.startswith(h + ".") for h in HEAVY))
            if not is_heavy:
                wrong.append(f"{where}: {target} is light; import it at the top")
            said = "deferred" in lines[line - 1] or (line > 1 and "deferred" in lines[line - 2])
            if not said:
                wrong.append(f"{where}: {target} needs a '# deferred: why' comment")
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_no_two_modules_share_a_file_name():
    names = defaultdict(list)
    for path in MODULES.values():
        if path.name not in ("__init__.py", "__main__.py"):
            names[path.name].append(str(path.relative_to(PACKAGE.parent)))
    same = {n: p for n, p in names.items() if len(p) > 1}
    assert not same, same
