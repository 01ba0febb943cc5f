"""Architecture rules: each concept has one home, and services never import the developer stack.

The rules read the source with ``ast``; any violation fails ``test_the_rules_hold``.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TREES = ("gateway", "worker", "agent", "schemas", "agentstream", "examples", "benchmarks")

# Each concept's one home.
NATS_CONTRACT = "agentstream.runtime.nats_contract"
TEMPORAL_REFS = "agentstream.runtime.temporal"
SETTINGS = "agentstream.runtime.settings"

DEV_STACK = re.compile(r"agentstream\.devstack(\.|$)")
ENTRY_POINT = re.compile(r"agentstream\.(cli|__main__)$")
DEV_TOOLS = re.compile(r"(examples|benchmarks)(\.|$)")
# The sandbox hands its children a PATH and finds its temporary directory itself (it moves
# into runtime/ in issue 10; both names are allowed).
SANDBOX_ENV = re.compile(r"agentstream\.(runtime\.)?sandbox\.(local|confinement|enter)$")

SUBJECT_OR_HEADER = re.compile(r"(runs|live)\.|\$JS\.|Nats-|Agentstream-")
TEMPORAL_NAME = re.compile(r"agent-|ChatWorkflow$")
ACTIVITY_BY_NAME = frozenset(
    {"execute_activity", "start_activity", "execute_local_activity", "start_local_activity"}
)
ENVIRONMENT = frozenset({"environ", "environb", "getenv", "getenvb"})

Violation = tuple[str, str, str]  # rule, file, offending text


@dataclass(frozen=True)
class Source:
    """One Python file: its path, dotted module name, every AST node and its string literals."""

    path: str
    module: str
    nodes: tuple[ast.AST, ...]
    strings: tuple[str, ...]

    @classmethod
    def parse(cls, path: str, text: str) -> Source:
        """Parse ``text`` as the file at ``path`` (relative to the repository, with slashes)."""
        tree = ast.parse(text, path)
        module = path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        nodes = tuple(ast.walk(tree))
        return cls(path, module, nodes, tuple(_string_literals(nodes)))

    @property
    def package(self) -> str:
        """The package relative imports start from."""
        return self.module if self.path.endswith("__init__.py") else self.module.rpartition(".")[0]


def _string_literals(nodes: tuple[ast.AST, ...]) -> Iterator[str]:
    """Every string constant, and each f-string's leading text, except docstrings."""
    skipped: set[int] = set()
    for node in nodes:
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skipped.add(id(first.value))
        elif isinstance(node, ast.JoinedStr):
            skipped.update(id(part) for part in node.values)
            lead = node.values[0] if node.values else None
            if isinstance(lead, ast.Constant) and isinstance(lead.value, str):
                yield lead.value
    for node in nodes:
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in skipped
        ):
            yield node.value


def _imported_modules(source: Source, node: ast.AST) -> Iterator[str]:
    """The modules an import statement names: ``from a import b`` names ``a``, or ``a.b``."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            package = source.package.split(".")
            parent = ".".join(package[: len(package) - node.level + 1])
            base = f"{parent}.{base}" if base else parent
        if DEV_STACK.match(base) or ENTRY_POINT.match(base):
            yield base
        else:
            yield from (f"{base}.{alias.name}" for alias in node.names)


def dev_stack_imports(source: Source) -> Iterator[str]:
    """Rule 1: only the developer stack, the entry point and dev tools import the dev stack."""
    module = source.module
    if DEV_STACK.match(module) or ENTRY_POINT.match(module) or DEV_TOOLS.match(module):
        return
    for node in source.nodes:
        for name in _imported_modules(source, node):
            if DEV_STACK.match(name) or ENTRY_POINT.match(name):
                yield name


def subject_and_header_literals(source: Source) -> Iterator[str]:
    """Rule 2: NATS subjects and header names are written only in the NATS contract."""
    if source.module != NATS_CONTRACT:
        yield from (text for text in source.strings if SUBJECT_OR_HEADER.match(text))


def temporal_names(source: Source) -> Iterator[str]:
    """Rule 3: the workflow's name and task queues are written only in the Temporal module.

    The developer stack is exempt: it names its processes ``agent-<org>`` too.
    """
    if source.module != TEMPORAL_REFS and not DEV_STACK.match(source.module):
        yield from (text for text in source.strings if TEMPORAL_NAME.match(text))


def activities_by_name(source: Source) -> Iterator[str]:
    """Rule 4: workflows call activities by reference (``execute_activity_method``)."""
    for node in source.nodes:
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ACTIVITY_BY_NAME:
                yield name


def environment_reads(source: Source) -> Iterator[str]:
    """Rule 5: services read their environment only through the settings module."""
    module = source.module
    if module == SETTINGS or SANDBOX_ENV.match(module) or DEV_STACK.match(module):
        return
    if ENTRY_POINT.match(module) or DEV_TOOLS.match(module):
        return
    for node in source.nodes:
        if isinstance(node, ast.Attribute) and node.attr in ENVIRONMENT:
            if isinstance(node.value, ast.Name) and node.value.id == "os":
                yield f"os.{node.attr}"
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            yield from (f"os.{a.name}" for a in node.names if a.name in ENVIRONMENT)


RULES: dict[str, Callable[[Source], Iterator[str]]] = {
    "dev-stack import": dev_stack_imports,
    "subject or header": subject_and_header_literals,
    "temporal name": temporal_names,
    "activity by name": activities_by_name,
    "environment read": environment_reads,
}


@cache
def repository_sources() -> tuple[Source, ...]:
    """Every Python file of the scanned trees, parsed once per test session."""
    paths = sorted(path for tree in TREES for path in (REPO / tree).rglob("*.py"))
    return tuple(
        Source.parse(path.relative_to(REPO).as_posix(), path.read_text()) for path in paths
    )


@cache
def found() -> Counter[Violation]:
    """Every violation in the repository, counted."""
    return Counter(
        (rule, source.path, text)
        for source in repository_sources()
        for rule, check in RULES.items()
        for text in check(source)
    )


def test_the_scan_covers_every_tree() -> None:
    scanned = {source.path.split("/")[0] for source in repository_sources()}
    assert scanned == set(TREES)


def test_the_rules_hold() -> None:
    broken = found()
    assert not broken, f"architecture rules broken (see this file's rules): {sorted(broken)}"


@pytest.mark.parametrize(
    ("rule", "path", "text", "expected"),
    [
        (
            "dev-stack import",
            "gateway/app.py",
            "import agentstream.devstack.stack",
            ["agentstream.devstack.stack"],
        ),
        (
            "dev-stack import",
            "agent/settings.py",
            "from agentstream.devstack.demo_dataset import reader_dsn",
            ["agentstream.devstack.demo_dataset"],
        ),
        ("dev-stack import", "worker/main.py", "from agentstream import cli", ["agentstream.cli"]),
        (
            "dev-stack import",
            "agentstream/runtime/http.py",
            "from ..devstack import processes",
            ["agentstream.devstack"],
        ),
        ("dev-stack import", "agentstream/runtime/http.py", "from . import tokens", []),
        ("dev-stack import", "agentstream/devstack/stack.py", "import agentstream.devstack", []),
        ("dev-stack import", "agentstream/cli.py", "from agentstream.devstack import stack", []),
        (
            "dev-stack import",
            "benchmarks/systems.py",
            "from agentstream.devstack.stack import x",
            [],
        ),
        (
            "subject or header",
            "worker/progress.py",
            'subject = f"live.{org}.{run}"\nheaders = {"Nats-Msg-Id": key}',
            ["live.", "Nats-Msg-Id"],
        ),
        ("subject or header", "gateway/x.py", '"$JS.API.DIRECT.GET." + s', ["$JS.API.DIRECT.GET."]),
        ("subject or header", "gateway/x.py", 'K = "Agentstream-Type"', ["Agentstream-Type"]),
        ("subject or header", "gateway/x.py", '"""Reads runs.<org>.<run>."""', []),
        ("subject or header", "gateway/x.py", 'def f():\n    """Nats-Msg-Id."""', []),
        ("subject or header", "gateway/x.py", 'f"{n} runs.{org}"', []),
        ("subject or header", "agentstream/runtime/nats_contract.py", 'S = "runs.>"', []),
        (
            "temporal name",
            "gateway/run_starter.py",
            'NAME = "ChatWorkflow"\nqueue = f"agent-{org}"',
            ["ChatWorkflow", "agent-"],
        ),
        ("temporal name", "gateway/x.py", 'print("started ChatWorkflow")', []),
        ("temporal name", "agentstream/runtime/temporal.py", 'NAME = "ChatWorkflow"', []),
        ("temporal name", "agentstream/devstack/stack.py", 'name = f"agent-{org}"', []),
        (
            "activity by name",
            "worker/workflows.py",
            'workflow.execute_activity("call_agent")\nstart_local_activity("x")',
            ["execute_activity", "start_local_activity"],
        ),
        ("activity by name", "worker/workflows.py", "workflow.execute_activity_method(f)", []),
        (
            "environment read",
            "gateway/settings.py",
            'import os\nos.environ.get("X")\nos.getenv("Y")',
            ["os.environ", "os.getenv"],
        ),
        ("environment read", "worker/main.py", "from os import environ, sep", ["os.environ"]),
        ("environment read", "agentstream/runtime/settings.py", "os.environ.get('X')", []),
        ("environment read", "agentstream/runtime/sandbox/local.py", "os.environ['PATH']", []),
        ("environment read", "agentstream/runtime/sandbox/enter.py", "os.getenv('TMPDIR')", []),
        ("environment read", "examples/temporal_e2e.py", "os.environ.get('X')", []),
    ],
)
def test_rule_fires_on_a_synthetic_source(
    rule: str, path: str, text: str, expected: list[str]
) -> None:
    assert sorted(RULES[rule](Source.parse(path, text))) == sorted(expected)
