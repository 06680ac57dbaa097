"""The package layout is the architecture: imports point one way and nothing below the web layer knows Flask.

    server → web → node → {exchange, cluster, delivery} → {config, settings, pairs, ticks, breakers}

Inside the web layer, a room per concern, pointing one way too:

    extension → {cli, metrics, testing} → http → streams → policy → errors

The node layer is the node and what it is made of: assembly (building its parts) and
monitor (its periodic pass).

Read from the source with `ast` (every import, including those inside functions),
so the rule holds for what the code could import, not only for what one test run loads.
"""
from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "pricefeed"

BASE = {"pricefeed.config", "pricefeed.pairs", "pricefeed.ticks", "pricefeed.breakers",
        "pricefeed.validation", "pricefeed.logs", "pricefeed.capacity", "pricefeed.log_format",
        "pricefeed.redis_urls", "pricefeed.shown_urls"}
# The settings groups are part of config: every layer reads its own.
BASE_PACKAGES = ("pricefeed.settings",)
SIDES = ("pricefeed.exchange", "pricefeed.cluster", "pricefeed.delivery")
NODE = {"pricefeed.node", "pricefeed.assembly", "pricefeed.monitor"}
WEB_ONLY_LIBRARIES = ("flask", "werkzeug", "jinja2")


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: pathlib.Path) -> set[str]:
    """Every module `path` imports, absolute, resolved against the package for relative imports."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    type_only = {id(n) for block in ast.walk(tree) if _is_type_checking_block(block) for n in ast.walk(block)}
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue   # `if TYPE_CHECKING:` imports never run
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            # `from pricefeed.delivery import sse` imports a module, not a name.
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                if _path_of(candidate) is not None:
                    found.add(candidate)
    found.discard(module)
    return found


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _path_of(module: str) -> pathlib.Path | None:
    if not module.startswith("pricefeed"):
        return None
    relative = pathlib.Path(*module.split("."))
    for candidate in (PACKAGE.parent / relative.with_suffix(".py"), PACKAGE.parent / relative / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _graph() -> dict[str, set[str]]:
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        graph[_module_name(path)] = {m for m in _imports(path) if _path_of(m) is not None}
    return graph


def _layer(module: str) -> str:
    if module in BASE or any(module == p or module.startswith(p + ".") for p in BASE_PACKAGES):
        return "base"
    if module in NODE:
        return "node"
    for side in SIDES:
        if module == side or module.startswith(side + "."):
            return side
    if module.startswith("pricefeed.web"):
        return "web"
    if module.startswith("pricefeed.server"):
        return "server"
    if module.startswith("pricefeed.simulator"):
        return "simulator"
    return module   # pricefeed


def test_the_package_has_no_import_cycle():
    graph = _graph()
    visiting: list[str] = []
    done: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        if module in done:
            return
        if module in visiting:
            cycles.append(visiting[visiting.index(module):] + [module])
            return
        visiting.append(module)
        for target in sorted(graph.get(module, ())):
            # A package's __init__ importing its own children is how packages work, not a cycle.
            if target.startswith(module + "."):
                continue
            visit(target)
        visiting.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


ALLOWED = {
    "base": {"base"},
    "pricefeed.exchange": {"base", "pricefeed.exchange"},
    "pricefeed.cluster": {"base", "pricefeed.cluster"},
    "pricefeed.delivery": {"base", "pricefeed.delivery"},
    "node": {"base", *SIDES, "node"},
    "web": {"base", *SIDES, "node", "web", "pricefeed"},
    "simulator": {"simulator"},
    "server": {"base", "web", "server"},     # pricefeed's gunicorn worker serves the web layer
}


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_imports_point_one_way(layer):
    wrong = []
    for module, targets in _graph().items():
        if _layer(module) != layer:
            continue
        for target in targets:
            if _layer(target) not in ALLOWED[layer] and target != "pricefeed":
                wrong.append(f"{module} imports {target}")
            if target == "pricefeed" and layer != "web" and layer != "simulator":
                wrong.append(f"{module} imports the package top level (it belongs to the web layer)")
    assert not wrong, "\n".join(sorted(wrong))


def test_nothing_below_the_web_layer_imports_flask():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        module = _module_name(path)
        if _layer(module) in ("web", "pricefeed"):
            continue
        for target in _imports(path):
            if target.split(".")[0] in WEB_ONLY_LIBRARIES:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(sorted(wrong))


# The web layer's rooms: a subpackage, or a top-level module of pricefeed.web.
WEB_ROOMS = {
    "errors": set(),                                             # the client errors, no Flask
    "policy": {"errors"},                                        # the public endpoint's rules
    "streams": {"policy", "errors"},                             # one stream's session, below Flask
    "http": {"streams", "policy", "errors"},                     # the Flask surface
    "metrics": {"http"},
    "cli": set(),
    "testing": {"http", "policy", "errors"},                     # test-only switches
    "extension": {"http", "streams", "metrics", "cli", "testing"},
}


def _room(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] != ["pricefeed", "web"]:
        return None
    return parts[2] if len(parts) > 2 else "web"     # "web": the package's own __init__ (EXTENSION_KEY)


@pytest.mark.parametrize("room", sorted(WEB_ROOMS))
def test_web_rooms_point_one_way(room):
    wrong = []
    for module, targets in _graph().items():
        if _room(module) != room:
            continue
        for target in targets:
            other = _room(target)
            if other not in (None, "web", room) and other not in WEB_ROOMS[room]:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(sorted(wrong))


@pytest.mark.parametrize("room", ["errors", "policy"])
def test_the_rules_and_errors_know_no_flask(room):
    """The endpoint's rules are plain functions of an environ, a config and the node: the stream
    path below Flask and the worker's door apply them without a request object."""
    wrong: list[str] = []
    for path in (PACKAGE / "web").rglob("*.py"):
        module = _module_name(path)
        if _room(module) == room:
            wrong.extend(f"{module} imports {target}" for target in _imports(path)
                         if target.split(".")[0] in WEB_ONLY_LIBRARIES)
    assert not wrong, "\n".join(sorted(wrong))


def test_only_the_extension_loads_the_test_switches():
    importers = sorted(module for module, targets in _graph().items() if "pricefeed.web.testing" in targets)
    assert importers == ["pricefeed.web.extension"]


def test_what_the_gunicorn_master_loads_from_the_web_layer_is_standard_library_only():
    """The worker class and the master's hooks import these before any worker has patched."""
    for module in ("pricefeed.web", "pricefeed.web.streams", "pricefeed.web.streams.raw_response",
                   "pricefeed.web.metrics", "pricefeed.web.metrics.process_files"):
        path = _path_of(module)
        assert path is not None, module
        assert {t for t in _imports(path) if t.startswith("pricefeed")} <= {"pricefeed.web", "pricefeed"}, module
        assert not {t.split(".")[0] for t in _imports(path)} & {"flask", "werkzeug", "gevent", "prometheus_client",
                                                                "redis"}, module


def test_the_walk_sees_the_whole_package():
    """A guard for the tests above: an import walk that found nothing would pass them all."""
    graph = _graph()
    assert {"pricefeed.node", "pricefeed.web.http.api", "pricefeed.exchange.feed", "pricefeed.cluster.redis_bus",
            "pricefeed.delivery.hub"} <= set(graph)
    assert "pricefeed.delivery.hub" in graph["pricefeed.assembly"]
    assert "pricefeed.node" in graph["pricefeed.web.http.api"]
