"""The import graph of rewardgym/: no cycles (function-level imports included), imports point
down the layers of DESIGN.md, and ``import rewardgym`` writes nothing to ``os.environ``.

envs -> rewards -> wrappers -> perceptual, intrinsic, llm_rewards, agents, deploy, multiagent,
testing -> cli; ``rewardgym/__init__`` (the package's public face) sits on top of them all.
``version`` and ``threads`` (thread budgets, used by every layer) import nothing from rewardgym.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "rewardgym"
LAYERS = {"version": 0, "threads": 0, "envs": 1, "rewards": 2, "wrappers": 3, "perceptual": 4, "intrinsic": 4,
          "llm_rewards": 4, "agents": 4, "deploy": 4, "multiagent": 4, "testing": 4, "cli": 5}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Every rewardgym module ``path`` imports when it runs, anywhere in the file (function bodies
    too; ``if TYPE_CHECKING:`` blocks, which never run, excepted)."""
    tree = ast.parse(path.read_text())
    this = _module_name(path)
    package = this if path.name == "__init__.py" else this.rsplit(".", 1)[0]
    type_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                 and ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING") for n in ast.walk(block)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "rewardgym"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if module.split(".")[0] == "rewardgym":
                submodules = {f"{module}.{a.name}" for a in node.names} & modules
                out |= submodules or {module}  # `from pkg import submodule` depends on the submodule
    return out


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imports(path, set(modules)):
            while imported and imported not in modules:  # `from rewardgym.x import y` (y a name) -> rewardgym.x
                imported = imported.rsplit(".", 1)[0] if "." in imported else ""
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) == 1:
        return 6  # the package's __init__: the top
    return LAYERS.get(parts[1])


def test_no_import_cycles_including_function_level_imports():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_imports_point_down_the_layers():
    upward = []
    for module, targets in _graph().items():
        mine = _layer(module)
        assert mine is not None, f"{module}: not in a known layer; add its package to LAYERS"
        for target in targets:
            theirs = _layer(target)
            if theirs is not None and theirs > mine:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports pointing up the layers:\n" + "\n".join(sorted(upward))


def test_import_rewardgym_writes_nothing_to_the_environment():
    code = ("import os, json; before = dict(os.environ); import rewardgym; "
            "print(json.dumps(sorted(set(os.environ.items()) ^ set(before.items()))))")
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_no_test_asserts_a_speed():
    """Speeds belong in benchmarks/: no test compares a measured duration or rate with a bound."""
    clocks = {"elapsed", "perf_counter", "monotonic", "duration", "fps", "steps_per_s"}
    offenders = []
    for path in Path(__file__).resolve().parent.glob("test_*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Assert):
                names = {n.id for n in ast.walk(node.test) if isinstance(n, ast.Name)} | \
                    {n.attr for n in ast.walk(node.test) if isinstance(n, ast.Attribute)}
                if names & clocks:
                    offenders.append(f"{path.name}:{node.lineno}: {ast.unparse(node.test)}")
    assert not offenders, "timing assertions:\n" + "\n".join(offenders)
