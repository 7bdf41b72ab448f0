"""Extract reward programs from an LLM reply.

:func:`extract_programs` turns a reply into the programs it contains, each with a map from
its lines back to the reply's lines (so an error at ``program.py:7`` can also be shown at
reply line 23). The rules, decided here:

1. **Fenced blocks** (```` ``` ```` or ``~~~``, three or more, closed by a fence of the
   same character at least as long; an unterminated last block, as in a reply cut off by
   ``max_tokens``, runs to the end). Blocks tagged with a language other than Python
   (``python``, ``py``, ``python3``, or none) are ignored: shell commands, JSON.
2. A block that **defines** ``compute_reward`` at top level (or, when it does not parse,
   contains ``def compute_reward``) is a *main* block: one program each, in reply order.
   Main blocks that do not parse are kept, so the sandbox reports the syntax error with
   its line and the LLM can repair it.
3. A block that parses and defines functions/constants but not ``compute_reward`` is a
   *helper* block. A main block that uses a name it does not define gets every helper
   block defining that name prepended (transitively, in reply order, one blank line
   between): LLMs often split a program into "helpers" and "reward". Helpers nobody uses
   are dropped.
4. **No fenced main block**: if the whole reply parses and defines ``compute_reward``, it is
   the program. Otherwise the code is taken from the first line that starts a Python
   statement (``def``, ``import``, ``from``, a constant or a docstring) before
   ``def compute_reward`` up to the longest end that parses (trailing prose is cut).
5. Nothing found: :class:`NoCodeFound`, whose ``reason`` is what to tell the LLM.

Identical programs (after stripping whitespace at the ends) are returned once.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass

_FENCE = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+#.-]*)[^\n`]*$")
_PYTHON_LANGS = frozenset({"", "python", "py", "python3", "py3", "python2"})
_STATEMENT_START = re.compile(r"^(def |import |from \S+ import |[A-Za-z_][A-Za-z_0-9]* *(: *[\w\[\], .]+)? *= |\"\"\"|''')")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")


class ReplyRejected(ValueError):
    """An LLM reply that cannot be used; ``reason`` is a short explanation for the LLM."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class NoCodeFound(ReplyRejected):
    """The reply holds no program."""


@dataclass(frozen=True)
class ExtractedProgram:
    """A program found in a reply.

    Attributes:
        source: the program text (ends with a newline).
        reply_lines: for each program line (index ``i`` is line ``i + 1``), its 1-based line
            in the reply, or None for a separator line inserted between merged blocks.
        blocks: indices (in reply order, 0-based) of the fenced blocks merged into it; empty
            for unfenced code.
        fenced: whether it came from fenced blocks.
        parses: whether ``source`` is valid Python syntax.
    """

    source: str
    reply_lines: tuple[int | None, ...]
    blocks: tuple[int, ...] = ()
    fenced: bool = True
    parses: bool = True

    def reply_line(self, line: int | None) -> int | None:
        """The reply line of program line ``line`` (1-based), or None."""
        if line is None or not 1 <= line <= len(self.reply_lines):
            return None
        return self.reply_lines[line - 1]


@dataclass
class _Block:
    index: int
    lines: list[str]
    first_line: int  # 1-based reply line of lines[0]
    lang: str

    @property
    def text(self) -> str:
        return textwrap.dedent("\n".join(self.lines)).strip("\n") + "\n"

    @property
    def line_numbers(self) -> list[int]:
        # ``text`` strips leading/trailing blank lines; keep the mapping in step
        lines = self.lines
        start = 0
        while start < len(lines) and not lines[start].strip():
            start += 1
        end = len(lines)
        while end > start and not lines[end - 1].strip():
            end -= 1
        return [self.first_line + i for i in range(start, end)]


def _fenced_blocks(reply: str) -> list[_Block]:
    lines = reply.splitlines()
    blocks: list[_Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence = m.group("fence")
        body_start = i + 1
        j = body_start
        while j < len(lines):
            close = re.match(r"^[ \t]*(`{3,}|~{3,})[ \t]*$", lines[j])
            if close and close.group(1)[0] == fence[0] and len(close.group(1)) >= len(fence):
                break
            j += 1
        blocks.append(_Block(len(blocks), lines[body_start:j], body_start + 1, m.group("lang").lower()))
        i = j + 1
    return blocks


def _parse(text: str) -> ast.Module | None:
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _defined(tree: ast.Module) -> set[str]:
    """Top-level names a module binds (defs, assignments, imports)."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                names.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _defines_reward(tree: ast.Module | None, text: str) -> bool:
    if tree is None:
        return re.search(r"^\s*def\s+compute_reward\s*\(", text, re.M) is not None
    return any(isinstance(n, ast.FunctionDef) and n.name == "compute_reward" for n in tree.body)


def _used(tree: ast.Module | None, text: str) -> set[str]:
    if tree is None:
        return set(_IDENT.findall(text))
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def extract_programs(reply_text: str) -> list[ExtractedProgram]:
    """The reward programs in ``reply_text`` (rules in the module docstring).

    Raises:
        NoCodeFound: no program; ``reason`` says what was wrong (no code at all, or code
            without ``compute_reward``).
    """
    blocks = [b for b in _fenced_blocks(reply_text) if b.lang in _PYTHON_LANGS]
    parsed = {b.index: _parse(b.text) for b in blocks}
    mains = [b for b in blocks if _defines_reward(parsed[b.index], b.text)]
    helpers = [b for b in blocks if parsed[b.index] is not None and b not in mains
               and _defined(parsed[b.index])]
    programs: list[ExtractedProgram] = []
    for main in mains:
        chosen = _helpers_for(main, parsed[main.index], helpers, parsed)
        parts = sorted(chosen, key=lambda b: b.index) + [main]
        source_lines: list[str] = []
        mapping: list[int | None] = []
        for k, part in enumerate(parts):
            if k:
                source_lines += ["", ""]
                mapping += [None, None]
            source_lines += part.text.rstrip("\n").split("\n")
            mapping += part.line_numbers
        source = "\n".join(source_lines) + "\n"
        programs.append(ExtractedProgram(source, tuple(mapping), tuple(p.index for p in parts), True,
                                         _parse(source) is not None))
    if not programs:
        unfenced = _unfenced(reply_text)
        if unfenced is not None:
            programs.append(unfenced)
    if not programs:
        all_blocks = _fenced_blocks(reply_text)
        if all_blocks:
            raise NoCodeFound(f"the reply has {len(all_blocks)} code block(s) but none defines "
                              "compute_reward(state, action); answer with the complete program in a "
                              "```python fenced block")
        raise NoCodeFound("the reply contains no Python code; answer with the complete program, defining "
                          "compute_reward(state, action), in a ```python fenced block")
    unique: list[ExtractedProgram] = []
    seen: set[str] = set()
    for p in programs:
        if p.source.strip() not in seen:
            seen.add(p.source.strip())
            unique.append(p)
    return unique


def _helpers_for(main: _Block, tree: ast.Module | None, helpers: list[_Block],
                 parsed: dict[int, ast.Module | None]) -> list[_Block]:
    """Helper blocks defining names ``main`` uses but does not define, transitively."""
    defined = _defined(tree) if tree is not None else set(re.findall(r"^\s*def\s+(\w+)", main.text, re.M))
    needed = _used(tree, main.text) - defined
    chosen: list[_Block] = []
    changed = True
    while changed:
        changed = False
        for h in helpers:
            if h in chosen:
                continue
            h_tree = parsed[h.index]
            assert h_tree is not None
            provides = _defined(h_tree)
            if provides & needed:
                chosen.append(h)
                defined |= provides
                needed = (needed | _used(h_tree, h.text)) - defined
                changed = True
    return chosen


def _unfenced(reply: str) -> ExtractedProgram | None:
    """Rule 4 of the module docstring: code without fences."""
    tree = _parse(reply)
    if tree is not None and _defines_reward(tree, reply):
        text = reply.strip("\n") + "\n"
        first = next(i for i, line in enumerate(reply.splitlines()) if line.strip()) + 1
        return ExtractedProgram(text, tuple(range(first, first + text.count("\n"))), (), False, True)
    lines = reply.splitlines()
    reward_at = next((i for i, line in enumerate(lines) if re.match(r"^def\s+compute_reward\s*\(", line)), None)
    if reward_at is None:
        return None
    start = reward_at
    k = reward_at - 1
    while k >= 0:  # extend upwards over code (statements, indented lines, blanks)
        line = lines[k]
        if not line.strip() or line[:1] in (" ", "\t", "#", ")", "]", "}") or _STATEMENT_START.match(line):
            if line.strip():
                start = k
            k -= 1
            continue
        break
    starts = [i for i in range(start, reward_at) if _STATEMENT_START.match(lines[i])] + [reward_at]
    for begin in starts:  # earliest start, then longest end that parses
        for end in range(len(lines), reward_at, -1):
            candidate = "\n".join(lines[begin:end]).strip("\n") + "\n"
            tree = _parse(candidate)
            if tree is not None and _defines_reward(tree, candidate):
                return ExtractedProgram(candidate, tuple(range(begin + 1, begin + 1 + candidate.count("\n"))),
                                        (), False, True)
    candidate = "\n".join(lines[start:]).strip("\n") + "\n"  # keep it: the sandbox names the syntax error
    return ExtractedProgram(candidate, tuple(range(start + 1, start + 1 + candidate.count("\n"))), (), False, False)
