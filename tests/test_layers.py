"""The import graph of rewardgym/: no cycles (function-level imports included), imports point
down a total order of packages (docs/ARCHITECTURE.md), and ``import rewardgym`` writes nothing
to ``os.environ``.

version, threads, files, text (import nothing from rewardgym) -> llm (the LLM client) -> envs
-> rewards -> wrappers -> learners -> intrinsic -> perceptual -> multiagent -> analysis -> runs ->
llm_rewards -> deploy -> testing -> cli -> agents (compatibility names) -> ``rewardgym/__init__``
(the package's public face). Every package has its own rank: an import between two packages
must point down, so the package graph is a DAG by construction (and a test checks it as one).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "rewardgym"
LAYERS = {"version": 0, "threads": 0, "files": 0, "text": 0, "llm": 1, "envs": 2, "rewards": 3, "wrappers": 4,
          "learners": 5, "intrinsic": 6, "perceptual": 7, "multiagent": 8, "analysis": 8.5, "runs": 9, "llm_rewards": 10,
          "deploy": 11, "testing": 12, "cli": 13, "agents": 14}


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
        return 15  # the package's __init__: the top
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


def test_packages_form_a_dag():
    """The graph of packages (an edge for any module of one importing any module of another) has no cycle."""
    packages: dict[str, set[str]] = {}
    for module, targets in _graph().items():
        mine = module.split(".")[1] if "." in module else ""
        for target in targets:
            theirs = target.split(".")[1] if "." in target else ""
            if theirs != mine:
                packages.setdefault(mine, set()).add(theirs)
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(packages.get(node, ())):
            assert state.get(nxt) != 1, "package cycle: " + " -> ".join(path + [node, nxt])
            if nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2
        order.append(node)

    for node in sorted(packages):
        if node not in state:
            visit(node, [])


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
    """Speeds belong in benchmarks/, and tests pass on a busy machine. Flagged in tests/test_*.py:

    * an ``assert`` on a clock, a duration or a rate;
    * ``time.sleep(<literal>)`` used to synchronise: outside a poll loop (a loop that ends on a
      condition, where the sleep is only the poll interval), wait for the event itself instead;
    * a literal ``timeout=``, ``timeout_s=``, ``deadline=`` (``_s``/``_ms``) keyword under 5 s, or a
      deadline ``time.monotonic() + <literal under 5 s>``;
    * a deployment under the deploy loop's real-time observation deadline (two control periods,
      16 ms for Hopper): ``run_deployment(...)`` without ``timeout_periods=``, a ``deploy``
      command line (a list or call with ``"deploy"`` and ``--options``) without
      ``--timeout-periods``, or either one under 100 periods.

    ``allowed`` names the exceptions, ``(file, enclosing function, what) -> why``; an entry that no
    longer matches anything is reported too, so the list stays true.
    """
    clocks = {"elapsed", "perf_counter", "monotonic", "duration", "fps", "steps_per_s"}
    deadlines = {"timeout", "timeout_s", "timeout_ms", "deadline", "deadline_s", "deadline_ms"}
    allowed = {
        ("test_hostile.py", "<module>", "timeout_s=2.0"):
            "FAST, the per-call limit of hostile programs: they loop forever (the limit under test) or fail "
            "or return in a call of milliseconds",
        ("test_hostile_robot.py", "test_one_tick_reads_a_bounded_number_of_messages", "deadline=0.0"):
            "ReadBudget's absolute perf_counter deadline, long past: a tick past its deadline reads nothing",
        ("test_llm_client.py", "test_hung_connection_times_out_and_a_timeout_is_retried_once_with_another_seed",
         "timeout_s=0.3"): "the limit under test: the server hangs for 30 s",
        ("test_llm_client.py", "test_connection_refused_is_retried_then_reported", "timeout_s=2"):
            "nothing listens on the port: the connection is refused at once",
        ("test_deploy.py", "test_nonfinite_policy_output_stops_with_a_host_clocked_driver", "run_deployment"):
            "TemplateRobot: a host-clocked driver whose observe returns at once (nothing to be late)",
        ("test_hostile_robot.py", "_deploy_cli", "deploy"):
            "the flood comes with the first observation, under the 30 s first-observation timeout",
    }

    def literal(node: ast.AST) -> float | None:
        value = node.value if isinstance(node, ast.Constant) else None
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                return None
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def is_poll_loop(loop: ast.AST) -> bool:
        ends = any(isinstance(n, (ast.Break, ast.Return)) for n in ast.walk(loop))
        return ends or (isinstance(loop, ast.While) and not (isinstance(loop.test, ast.Constant) and loop.test.value))

    offenders, used = [], set()
    for path in sorted(Path(__file__).resolve().parent.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

        def flag(node: ast.AST, what: str, why: str) -> None:
            scope = parents.get(node)
            while scope is not None and not isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
                scope = parents.get(scope)
            key = (path.name, scope.name if scope is not None else "<module>", what)
            if key in allowed:
                used.add(key)
            else:
                offenders.append(f"{path.name}:{node.lineno}: {why}: {ast.unparse(node)[:160]}")

        for node in ast.walk(tree):
            if isinstance(node, ast.Assert):
                names = {n.id for n in ast.walk(node.test) if isinstance(n, ast.Name)} | \
                    {n.attr for n in ast.walk(node.test) if isinstance(n, ast.Attribute)}
                if names & clocks:
                    flag(node, "assert", "a timing assertion")
            if isinstance(node, (ast.List, ast.Tuple, ast.Call)):
                items = node.args if isinstance(node, ast.Call) else node.elts
                words = [item.value if isinstance(item, ast.Constant) else None for item in items]
                if "deploy" in words and any(isinstance(w, str) and w.startswith("--") for w in words):
                    at = words.index("--timeout-periods") if "--timeout-periods" in words else None
                    periods = literal(items[at + 1]) if at is not None and at + 1 < len(items) else None
                    if at is None or (periods is not None and periods < 100):
                        flag(node, "deploy", "a deploy command under the real-time observation deadline")
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):  # time.monotonic() + 2.0
                now, step = sorted((node.left, node.right), key=lambda side: not isinstance(side, ast.Call))
                clock = getattr(getattr(now, "func", None), "attr", None)
                seconds = literal(step) if not isinstance(getattr(step, "value", None), str) else None
                if clock in ("monotonic", "perf_counter", "time") and seconds is not None and seconds < 5:
                    flag(node, ast.unparse(node), "a short literal deadline")
            if not isinstance(node, ast.Call):
                continue
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if func == "sleep" and node.args and literal(node.args[0]) is not None \
                    and not isinstance(node.args[0].value, str):
                loop = parents.get(node)
                while loop is not None and not isinstance(loop, (ast.While, ast.For, ast.FunctionDef,
                                                                 ast.AsyncFunctionDef, ast.Lambda)):
                    loop = parents.get(loop)
                if not (isinstance(loop, (ast.While, ast.For)) and is_poll_loop(loop)):
                    flag(node, ast.unparse(node), "a fixed sleep to synchronise (wait for the event)")
            if func == "run_deployment":
                periods = next((kw.value for kw in node.keywords if kw.arg == "timeout_periods"), None)
                if periods is None or (literal(periods) is not None and literal(periods) < 100):
                    flag(node, "run_deployment", "a deployment under the real-time observation deadline")
            for kw in node.keywords:
                seconds = literal(kw.value) if kw.arg in deadlines else None
                if seconds is not None and not isinstance(kw.value.value, str) and \
                        (seconds / 1000 if kw.arg.endswith("_ms") else seconds) < 5:
                    flag(node, f"{kw.arg}={ast.unparse(kw.value)}", f"a short literal {kw.arg}")
    stale = [f"{k}: {why}" for k, why in allowed.items() if k not in used]
    assert not offenders and not stale, "waits that a busy machine breaks:\n" + "\n".join(offenders) + \
        ("\nallow-list entries that match nothing:\n" + "\n".join(stale) if stale else "")


def test_long_modules_say_why():
    """A module of more than 600 lines says why at its top ("Size: above 600 lines because ..."):
    long files are a decision, not an accident (the reward library's programs excepted)."""
    unexplained = []
    for path in PACKAGE.rglob("*.py"):
        if "library" in path.parts:
            continue
        text = path.read_text()
        if text.count("\n") > 600:
            doc = ast.get_docstring(ast.parse(text)) or ""
            if "Size: above 600 lines because" not in doc:
                unexplained.append(f"{path.relative_to(PACKAGE.parent)}: {text.count(chr(10))} lines")
    assert not unexplained, "long modules without a reason:\n" + "\n".join(unexplained)
