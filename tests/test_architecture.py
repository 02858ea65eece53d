"""The shape of `probe/` (issue 17): no new import cycle, no new check id below the checks.

Both lists below hold what `main` has today and may only shrink: a test fails on a cycle or a
check id that is not listed, and on a listed one that no longer exists (delete its line).
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from probe.checks import catalogue

PROBE = Path(__file__).resolve().parent.parent / "probe"

Graph = Mapping[str, frozenset[str]]

ALLOWED_CYCLES: frozenset[frozenset[str]] = frozenset({
    # probe.checks imports its catalogue, which imports the protocol packages' checks, which
    # import probe.checks.base: gone once probe.checks imports nothing (issue 17).
    frozenset({"probe.checks", "probe.checks.catalogue", "probe.protocols.ssh.checks",
               "probe.protocols.telnet.checks"}),
})

ALLOWED_CHECK_IDS: Counter[tuple[str, str]] = Counter({
    # (module, check id): how many string literals of the module name the id
    ("probe.observe.coap", "coap.cleartext"): 1,
    ("probe.observe.http", "http.authentication"): 1,
    ("probe.observe.http", "http.default-credentials"): 1,
    ("probe.observe.mqtt", "mqtt.default-credentials"): 1,
    ("probe.observe.mqtt", "mqtt.topic-authorization"): 1,
    ("probe.observe.monitor", "monitor.auth-failure-event"): 1,
    ("probe.observe.monitor", "monitor.bruteforce-throttling"): 1,
    ("probe.observe.monitor", "monitor.heartbeat"): 1,
})


def module_name(path: Path) -> str:
    parts = path.relative_to(PROBE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, ast.Module]:
    return {module_name(path): ast.parse(path.read_text(), str(path))
            for path in sorted(PROBE.rglob("*.py"))}


def _type_checking_only(tree: ast.Module) -> set[ast.AST]:
    """Nodes under `if TYPE_CHECKING:`: they never run, so they make no cycle."""
    return {node for block in ast.walk(tree) if isinstance(block, ast.If)
            and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
            for stmt in block.body for node in ast.walk(stmt)}


def imported(name: str, tree: ast.Module, known: set[str]) -> Iterator[str]:
    """The probe modules `name` imports anywhere (functions included), each with the parent
    packages that import runs first, except the packages `name` itself lives in."""
    package = name if _is_package(name) else name.rpartition(".")[0]
    skipped = _type_checking_only(tree)
    for node in ast.walk(tree):
        if node in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            if target in known:
                yield from _with_parents(target, name)


def _is_package(name: str) -> bool:
    return (PROBE.parent / name.replace(".", "/") / "__init__.py").is_file()


def _with_parents(target: str, importer: str) -> Iterator[str]:
    parts = target.split(".")
    for n in range(1, len(parts) + 1):
        module = ".".join(parts[:n])
        if not (importer == module or importer.startswith(module + ".")):
            yield module


def import_graph() -> dict[str, frozenset[str]]:
    """Every module of probe/ and what it imports. `probe.checks` also imports each
    `probe.checks.*` module: `catalogue()` loads them all through pkgutil and importlib."""
    trees = modules()
    known = set(trees)
    graph = {name: frozenset(imported(name, tree, known)) for name, tree in trees.items()}
    graph["probe.checks"] |= {m for m in known if m.startswith("probe.checks.")}
    return graph


def strongly_connected(graph: Graph) -> list[frozenset[str]]:
    """Tarjan's algorithm: every strongly connected component of the graph."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component: set[str] = set()
            member = ""
            while member != node:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
            found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def cycles(graph: Graph) -> set[frozenset[str]]:
    """The components that are cycles: two modules or more, or one importing itself."""
    return {c for c in strongly_connected(graph)
            if len(c) > 1 or any(m in graph.get(m, ()) for m in c)}


def mentions(tree: ast.Module, ids: Iterable[str]) -> Iterator[str]:
    """Each check id named in a string literal of the module (messages and f-strings
    included; documentation strings aside), once per mention."""
    alternatives = "|".join(re.escape(i) for i in sorted(ids, key=len, reverse=True))
    named = re.compile(rf"(?<![\w.-])({alternatives})(?![\w-])")
    documentation = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                and id(node) not in documentation):
            yield from named.findall(node.value)


def check_id_mentions() -> Counter[tuple[str, str]]:
    """(module, check id) for every mention of a catalogue check id in probe/observe/*.py."""
    ids = list(catalogue())
    return Counter((name, check_id) for name, tree in modules().items()
                   if name.startswith("probe.observe.") for check_id in mentions(tree, ids))


def _shown(items: Iterable[object]) -> str:
    return "\n  ".join(sorted(map(str, items)))


def test_the_cycle_finder_sees_a_cycle_through_a_lazy_import_and_a_parent() -> None:
    graph = {"a": frozenset({"b"}), "b": frozenset({"c.d"}), "c.d": frozenset({"a"}),
             "e": frozenset({"e"}), "f": frozenset({"a"})}
    assert cycles(graph) == {frozenset({"a", "b", "c.d"}), frozenset({"e"})}
    edges = import_graph()
    # function-level: lab.cli imports selftest inside a command
    assert "probe.lab.selftest" in edges["probe.lab.cli"]
    # a parent package runs first: importing probe.observe.tls imports probe.observe
    assert {"probe.observe", "probe.observe.tls"} <= edges["probe.checks.tls"]
    assert "probe.checks" in edges["probe.engine"]
    assert "probe.checks.fleet" in edges["probe.checks"]
    # a module's own packages are not edges, `if TYPE_CHECKING:` imports are not edges
    assert "probe.checks" not in edges["probe.checks.net"]
    assert "probe.context" not in edges["probe.observe.base"]


def test_a_check_id_is_found_in_messages_but_not_in_documentation() -> None:
    source = '''"""About mqtt.anonymous-access."""
LIMIT = 3
"""Named after `mqtt.anonymous-access`."""
OWNER = "mqtt.anonymous-access"
def f(x: int) -> str:
    """mqtt.anonymous-access"""
    return f"mqtt.anonymous-access: {x}; see mqtt.anonymous-access."
FIELDS = ("mqtt.address", "mqtt.anonymous-access-2", "xmqtt.anonymous-access")
'''
    found = list(mentions(ast.parse(source), ["mqtt.anonymous-access", "mqtt.cleartext"]))
    assert found == ["mqtt.anonymous-access"] * 3


def test_no_import_cycle_beyond_todays() -> None:
    found = cycles(import_graph())
    new, gone = found - ALLOWED_CYCLES, ALLOWED_CYCLES - found
    shrunk = {c for c in new if any(c < allowed for allowed in gone)}
    assert not new - shrunk, (
        f"new import cycle(s) in probe/:\n  {_shown(map(sorted, new - shrunk))}")
    assert not gone, ("allowed cycles gone or smaller: delete them from ALLOWED_CYCLES:\n  "
                      f"{_shown(map(sorted, gone))}\nand add what remains of them:\n  "
                      f"{_shown(map(sorted, shrunk))}")


def test_no_check_id_in_the_collectors_beyond_todays() -> None:
    found = check_id_mentions()
    new, gone = found - ALLOWED_CHECK_IDS, ALLOWED_CHECK_IDS - found
    assert not new, ("a check id in probe/observe: collectors take parameters, checks own "
                     f"their ids:\n  {_shown(new.elements())}")
    assert not gone, f"lower or delete in ALLOWED_CHECK_IDS:\n  {_shown(gone.elements())}"
