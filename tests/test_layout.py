"""The package's layout, read from its source with `ast` (nothing is imported or run).

- No import circles, counting imports inside functions too (not those under `if TYPE_CHECKING:`,
  which never run).
- Imports go down the tiers below, never up or sideways (README "Layout" draws them).
- Outside `server/` only `client.py` and `cli.py` import the server; `server/` imports nothing
  of the client but `catalog.py`, the vocabulary both share, and `compat.py`, the one home of
  every reach into a third-party internal (uvicorn's included); those two import nothing else.
- An import inside a function is only there to defer a heavy module (its own top-level imports
  reach one of HEAVY), and says so in a `# deferred: why` comment.
- No two modules share a file name.
- `redact.py` imports nothing of the package (everything may use it); parsing (cell.py), results
  and errors do not import the client.
- No class over 250 lines, no function over 80, in the whole package.
- At most 3 module-level mutable containers outside `server/` (a kernel's state lives in its
  Session; what is left are true process caches), each with a comment saying why. An instance
  of one of our classes that keeps state (`JOBS = LiveJobs()`) counts as a container.
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
    2: {"live", "display", "rows", "export"},
    1: {"runner", "cell"},
    0: {"request", "args", "options", "stream", "sender", "conversation", "result", "client",
        "render", "markdown_text", "blocks",
        "loop", "errors", "prompt", "media", "images", "tools", "functions", "schema", "replay",
        "catalog", "server_process", "rowcache", "session", "redact", "pricing", "spend",
        "cell_log", "companion", "variables", "agents_cmd", "compat"},
}
CORE = 0
# The client modules server/ may import: the vocabulary both share, and compat.py, where every
# patch of a third-party internal lives (it imports nothing of the package).
SHARED = {"catalog", "compat"}
SERVER_USERS = {"client", "cli"}   # the client modules that may import server/
# Third-party modules slow enough to defer (measured with python -X importtime).
HEAVY = {"google.genai", "ipywidgets", "PIL", "xllamacpp", "httpx", "jsonschema", "pydantic",
         "nbclient", "nbformat", "jupyter_client", "uvicorn", "starlette", "IPython", "traitlets",
         "jupyterlab", "numpy", "pandas", "tqdm", "referencing", "mcp", "httpx2",
         "genai_prices"}


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


def _type_checking_only(node: ast.AST) -> bool:
    """`if TYPE_CHECKING:` without an `else` (only a type checker reads it)."""
    test = node.test if isinstance(node, ast.If) and not node.orelse else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(name: str, path: Path) -> list:
    """(imported module, line, inside a function) for every import statement of a module."""
    tree = ast.parse(path.read_text(), str(path))
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            if _type_checking_only(child):  # never run: names for annotations only
                continue
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


def test_only_the_client_and_the_cli_reach_the_server_and_the_server_only_shared_modules():
    wrong = []
    for name, targets in _edges().items():
        for target in targets:
            if not _in_server(name) and _in_server(target) and _short(name) not in SERVER_USERS:
                wrong.append(f"{name} imports {target}")
            if _in_server(name) and not _in_server(target) and _short(target) not in SHARED:
                wrong.append(f"{name} imports the client's {target}")
            if _short(name) in SHARED and _short(target) not in SHARED:  # or server/ gets it too
                wrong.append(f"{name}, which server/ imports, imports {target}")
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


# -- size and state ------------------------------------------------------------------------------
ALLOWED_LONG = {"cli.serve"}  # split after the console's serve options land
MAX_CLASS_LINES, MAX_FUNCTION_LINES, MAX_MODULE_STATE = 250, 80, 3
# Made empty and filled at run time (a call with arguments, e.g. dict(width=...), is a table).
_EMPTY_CONTAINERS = {"dict", "list", "set"}
_CONTAINERS = {"defaultdict", "OrderedDict", "deque", "WeakSet", "WeakValueDictionary",
               "WeakKeyDictionary"}


def _trees():
    return {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def _short_name(module: str, name: str) -> str:
    return f"{_short(module)}.{name}"


def test_redact_is_a_leaf():
    reached = {t for t, _, _ in IMPORTS["gemini_magics.redact"] if t.startswith("gemini_magics")}
    assert not reached, f"redact.py imports {sorted(reached)}"


def test_parsing_results_and_errors_do_not_reach_the_backend():
    """What they need from client.py (is it offline? redaction) is passed in or in redact.py."""
    graph = _edges()
    wrong = [m for m in ("cell", "result", "errors") if "gemini_magics.client" in
             graph[f"gemini_magics.{m}"]]
    assert not wrong, f"{wrong} import client.py"


def test_no_class_or_function_is_too_long():
    long = []
    for module, tree in _trees().items():
        for node in ast.walk(tree):
            limit = (MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else MAX_FUNCTION_LINES
                     if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else None)
            lines = node.end_lineno - node.lineno + 1 if limit else 0
            if limit and lines > limit and _short_name(module, node.name) not in ALLOWED_LONG:
                long.append(f"{_short_name(module, node.name)}: {lines} lines (at most {limit})")
    assert not long, "\n".join(sorted(long))


def _keeps_state(node: ast.ClassDef) -> bool:
    """A class whose instances hold state: it sets `self.NAME` somewhere, or is a dataclass
    that is not frozen."""
    for deco in node.decorator_list:
        call = deco if isinstance(deco, ast.Call) else None
        name = ast.unparse(call.func if call else deco)
        if name.rpartition(".")[2] == "dataclass":
            return not any(k.arg == "frozen" and getattr(k.value, "value", False)
                           for k in (call.keywords if call else []))
    return any(isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
               and n.value.id == "self" and isinstance(n.ctx, ast.Store) for n in ast.walk(node))


# The package's classes whose instances hold state, by name.
STATEFUL_CLASSES = {node.name for tree in (ast.parse(p.read_text()) for p in MODULES.values())
                    for node in ast.walk(tree)
                    if isinstance(node, ast.ClassDef) and _keeps_state(node)}


def _is_container(value: ast.AST) -> bool:
    if isinstance(value, ast.Dict):
        return not value.keys
    if isinstance(value, (ast.List, ast.Set)):
        return not value.elts
    if not isinstance(value, ast.Call):
        return False
    func = value.func
    name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
    return name in _CONTAINERS or name in STATEFUL_CLASSES or (
        name in _EMPTY_CONTAINERS and not value.args and not value.keywords)


def _module_state(tree: ast.Module) -> dict:
    """{name: line} of the module-level containers filled at run time, and of the names a
    function rebinds with `global`."""
    found = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) and node.value is not None else [])
        if targets and _is_container(node.value):
            found.update({t.id: node.lineno for t in targets if isinstance(t, ast.Name)})
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            for name in node.names:
                found.setdefault(name, _assigned_line(tree, name))
    return found


def _assigned_line(tree: ast.Module, name: str) -> int:
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else [])
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return node.lineno
    return 1


def test_module_level_state_is_a_few_commented_process_caches():
    state, silent = [], []
    for module, tree in _trees().items():
        if _in_server(module):
            continue
        lines = MODULES[module].read_text().splitlines()
        for name, line in _module_state(tree).items():
            state.append(_short_name(module, name))
            if "#" not in lines[line - 1] and not lines[line - 2].lstrip().startswith("#"):
                silent.append(f"{_short_name(module, name)} (line {line})")
    assert len(state) <= MAX_MODULE_STATE, (
        f"{len(state)} module-level containers outside server/ (at most {MAX_MODULE_STATE}; "
        f"a kernel's state belongs in its Session): {sorted(state)}")
    assert not silent, "module-level state without a comment saying why: " + ", ".join(silent)
