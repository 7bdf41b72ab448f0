"""Edit mode: small structured changes to a reward program that already works.

Weak models (a 135M-parameter local model, and often 7B ones) rarely write a whole valid
program: prose, unbalanced brackets, statements at module level. In edit mode the model is
shown a *base* program that passes the critic (the best program so far, the library program
written for the task, or one written for another task with the same state view, adapted by
:func:`adapt_base`) and asked for one JSON object, not code:

.. code-block:: json

    {"idea": "reach faster",
     "set": {"W_IN_PLACE": 12.0, "BOUND": 0.04},
     "remove_terms": ["ctrl"],
     "add_terms": [{"name": "speed", "weight": 0.1, "expression": "-norm(action)"}]}

* ``set`` gives a value for every *parameter*: the float literals of the base's
  ``compute_reward``, lifted into named module constants by :func:`parameterize`
  (``10.0 * in_place`` becomes ``W_IN_PLACE * in_place`` with ``W_IN_PLACE = 10.0``). Names
  come from the keyword or helper parameter the number is passed as (``margin=0.5`` ->
  ``MARGIN``), else the variable it is assigned to (``W_`` + name inside a product), else
  ``C``; a suffix ``_2`` … keeps them unique.
* ``remove_terms`` names terms of the base's ``terms`` dict to drop (their contribution is
  subtracted); ``add_terms`` adds at most :data:`MAX_ADDED_TERMS` terms ``weight *
  (expression)``, an expression over ``state``, ``action``, ``np`` and the prelude.

The reply is validated against :func:`edit_schema` (JSON Schema; parameter and term names
are enums of the base's own), which is also sent to the server as its structured-output
constraint (a grammar on llama.cpp), so even a very small model answers in form. The
edited program (:func:`apply_edit`) is a plain reward program: it goes through the same
critic and training as any other candidate.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from rewardgym.llm_rewards.extract import ReplyRejected

MAX_ADDED_TERMS = 2
MIN_LIFTED = 1e-4
"""Float literals smaller than this in magnitude (guards such as ``1e-6``) are not lifted."""
_TERM_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_RESERVED = frozenset({"base", "reward", "terms", "state", "action", "np"})


class EditError(ReplyRejected):
    """A reply is not a usable edit; ``reason`` is what to tell the model."""


@dataclass(frozen=True)
class Parameterized:
    """A base program with its ``compute_reward`` numbers lifted into named constants.

    Attributes:
        name: where the base came from (``MetaWorld-Push``, ``r0c1`` ...).
        source: the program text with the constants block (what the model is shown).
        values: ``{NAME: value}`` in order of appearance.
        contexts: ``{NAME: the source line the number came from}``.
        terms: names of the terms ``compute_reward`` returns in a dict literal (the ones an
            edit may remove).
        original: the program as given (what :func:`parameterize` makes this from again).
        returns_terms: ``compute_reward`` returns ``(reward, terms)``, not a bare reward.
    """

    name: str
    source: str
    values: dict[str, float]
    contexts: dict[str, str] = field(default_factory=dict)
    terms: tuple[str, ...] = ()
    original: str = ""
    returns_terms: bool = False


def _helper_params() -> dict[str, list[str]]:
    from rewardgym.rewards.prelude import HELPERS

    return {name: list(inspect.signature(fn).parameters) for name, fn in HELPERS.items()}


def _returned_terms(fn: ast.FunctionDef) -> tuple[bool, tuple[str, ...]]:
    """Whether ``fn`` returns ``(reward, terms)``, and the names of its dict-literal terms."""
    pairs = False
    names: list[str] = []
    for node in ast.walk(fn):
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple) and len(node.value.elts) == 2:
            pairs = True
            if isinstance(node.value.elts[1], ast.Dict):
                for key in node.value.elts[1].keys:
                    if isinstance(key, ast.Constant) and isinstance(key.value, str) and key.value not in names:
                        names.append(key.value)
    return pairs, tuple(names)


def parameterize(source: str, name: str = "base") -> Parameterized:
    """Lift the float literals of ``compute_reward`` into named constants (module docstring).

    Raises:
        EditError: the source does not parse or defines no ``compute_reward``.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise EditError(f"the base program does not parse: {exc}") from None
    fn = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "compute_reward"), None)
    if fn is None:
        raise EditError("the base program defines no compute_reward")
    local_params = {n.name: [a.arg for a in n.args.args] for n in tree.body if isinstance(n, ast.FunctionDef)}
    params = {**_helper_params(), **local_params}
    parents: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(fn):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    lines = source.split("\n")
    found: list[tuple[ast.Constant, str]] = []
    for node in ast.walk(fn):
        if not (isinstance(node, ast.Constant) and type(node.value) is float and abs(node.value) >= MIN_LIFTED):
            continue
        if node.lineno != node.end_lineno:
            continue
        base, up, child = None, parents.get(node), node
        while isinstance(up, ast.UnaryOp):
            child, up = up, parents.get(up)
        in_product = isinstance(up, ast.BinOp) and isinstance(up.op, (ast.Mult, ast.Div))
        if any(isinstance(a, ast.Subscript) and child is not a.value for a in _ancestors(node, parents)):
            continue  # an index or slice
        if isinstance(up, ast.keyword) and up.arg:
            if up.arg == "axis":
                continue
            base = up.arg
        elif isinstance(up, ast.Call) and child in up.args:
            func = up.func.id if isinstance(up.func, ast.Name) else up.func.attr if isinstance(up.func, ast.Attribute) \
                else ""
            names = params.get(func, [])
            index = up.args.index(child)
            if index < len(names):
                base = names[index]
        if base is None:
            assign = next((a for a in _ancestors(node, parents) if isinstance(a, (ast.Assign, ast.AugAssign))), None)
            target = assign.targets[0] if isinstance(assign, ast.Assign) else getattr(assign, "target", None)
            if isinstance(target, ast.Name):
                base = ("w_" if in_product else "") + target.id
            elif in_product:
                other = up.right if up.left is child else up.left
                base = f"w_{other.id}" if isinstance(other, ast.Name) else "w"
            else:
                base = "c"
        found.append((node, re.sub(r"[^A-Z0-9_]", "_", base.upper())))
    values: dict[str, float] = {}
    contexts: dict[str, str] = {}
    for node in tree.body:  # NAME = number at module level (an edited program's): already named
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id.isupper():
            value = node.value.operand if isinstance(node.value, ast.UnaryOp) and \
                isinstance(node.value.op, ast.USub) else node.value
            if isinstance(value, ast.Constant) and type(value.value) in (int, float):
                sign = -1.0 if value is not node.value else 1.0
                values[node.targets[0].id] = sign * float(value.value)
                contexts[node.targets[0].id] = lines[node.lineno - 1].strip()
    named = len(values)
    replacements: list[tuple[int, int, int, str]] = []
    for node, base in sorted(found, key=lambda item: (item[0].lineno, item[0].col_offset)):
        const = base
        k = 2
        while const in values:
            const = f"{base}_{k}"
            k += 1
        values[const] = float(node.value)
        contexts[const] = lines[node.lineno - 1].strip()
        replacements.append((node.lineno - 1, node.col_offset, node.end_col_offset, const))
    for row, start, end, const in sorted(replacements, key=lambda r: (r[0], -r[1])):
        line = lines[row]
        lines[row] = line[:start] + const + line[end:]
    body = "\n".join(lines)
    first_def = min((n.lineno for n in tree.body if isinstance(n, (ast.FunctionDef, ast.Assign))), default=1)
    head, tail = lines[:first_def - 1], lines[first_def - 1:]
    block = ["# Parameters: the numbers of compute_reward, named (edit mode changes these)."]
    block += [f"{n} = {v!r}" for n, v in list(values.items())[named:]]
    if len(values) > named:
        body = "\n".join(head + block + ["", ""] + tail)
    pairs, terms = _returned_terms(fn)
    return Parameterized(name, body.rstrip("\n") + "\n", values, contexts, terms, source, pairs)


def _ancestors(node: ast.AST, parents: dict[ast.AST, ast.AST]):
    up = parents.get(node)
    while up is not None:
        yield up
        up = parents.get(up)


def edit_schema(base: Parameterized) -> dict[str, Any]:
    """The JSON Schema of an edit of ``base`` (parameter and term names as enums; every
    property required and no others, as OpenAI's strict structured outputs demand)."""
    set_props = {n: {"type": "number"} for n in base.values}
    return {
        "type": "object",
        "properties": {
            "idea": {"type": "string"},
            "set": {"type": "object", "properties": set_props, "required": list(base.values),
                    "additionalProperties": False},
            "remove_terms": {"type": "array", "items": {"type": "string", "enum": list(base.terms)}}
            if base.terms else {"type": "array", "maxItems": 0, "items": {"type": "string"}},
            "add_terms": {"type": "array", "maxItems": MAX_ADDED_TERMS, "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "weight": {"type": "number"},
                               "expression": {"type": "string"}},
                "required": ["name", "weight", "expression"], "additionalProperties": False}},
        },
        "required": ["idea", "set", "remove_terms", "add_terms"],
        "additionalProperties": False,
    }


@dataclass(frozen=True)
class Edit:
    """A validated edit (see the module docstring)."""

    idea: str
    set: dict[str, float]
    remove_terms: tuple[str, ...]
    add_terms: tuple[tuple[str, float, str], ...]

    def summary(self) -> str:
        parts = []
        if self.set:
            parts.append("set " + ", ".join(f"{k}={v:g}" for k, v in self.set.items()))
        if self.remove_terms:
            parts.append("removed " + ", ".join(self.remove_terms))
        if self.add_terms:
            parts.append("added " + ", ".join(f"{n} = {w:g} * ({e})" for n, w, e in self.add_terms))
        return "; ".join(parts) or "no change"


def _json_object(text: str) -> Any:
    """The first JSON object in ``text`` (bare, or in a code fence), else raise EditError saying
    what was wrong with the closest candidate.

    Lenient where the meaning is unambiguous: control characters inside strings (a raw newline
    in an ``idea`` or an ``expression``, which weak models and llama.cpp's JSON mode write) are
    read as themselves (``json``'s ``strict=False``)."""
    fence = re.search(r"```(?:json)?\s*(\{.*?\})\s*```", text, re.DOTALL)
    candidates = [fence.group(1)] if fence else []
    start = text.find("{")
    if start >= 0:
        candidates.append(text[start:])
    decoder = json.JSONDecoder(strict=False)
    problem = None
    for candidate in candidates:
        try:
            return decoder.raw_decode(candidate.strip())[0]
        except json.JSONDecodeError as exc:
            problem = problem or f"{exc.msg} at line {exc.lineno} column {exc.colno} of the JSON"
    detail = f" ({problem})" if problem else " (no '{' in it)"
    raise EditError(f"the reply holds no JSON object{detail}; answer with exactly one JSON object as described")


def parse_edit(text: str, base: Parameterized) -> Edit:
    """Parse and validate a reply as an edit of ``base``.

    Raises:
        EditError: no JSON object, a schema violation (its path and message), a bad term name or
            an added expression that is not one Python expression.
    """
    import jsonschema

    data = _json_object(text)
    if isinstance(data, dict) and isinstance(data.get("set"), dict):
        # numbers the model left out keep their value; stray keys are reported by the schema
        data = {"idea": "", "remove_terms": [], "add_terms": [], **data,
                "set": {**base.values, **data["set"]}}
    try:
        jsonschema.validate(data, edit_schema(base))
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "the object"
        raise EditError(f"the edit does not follow the schema at {where}: {exc.message}") from None
    added = []
    for term in data["add_terms"]:
        name, expression = term["name"], term["expression"].strip()
        if not _TERM_NAME.match(name) or name in base.terms or name in _RESERVED or name in base.values \
                or name in {n for n, _, _ in added}:
            raise EditError(f"added term name {name!r} must be new, lower_case, at most 32 characters, and not "
                            f"one of {', '.join(sorted(_RESERVED))}")
        try:
            ast.parse(expression, mode="eval")
        except SyntaxError as exc:
            raise EditError(f"the expression of added term {name!r} is not one Python expression: {exc.msg}") \
                from None
        added.append((name, float(term["weight"]), expression))
    changed = {k: float(v) for k, v in data["set"].items() if float(v) != base.values[k]}
    if not changed and not data["remove_terms"] and not added:
        raise EditError("the edit changes nothing: give at least one constant a new value, or remove or add a term")
    return Edit(str(data["idea"])[:300], changed, tuple(dict.fromkeys(data["remove_terms"])), tuple(added))


def apply_edit(base: Parameterized, edit: Edit) -> str:
    """The program ``edit`` makes of ``base``: new constant values, and (for term edits) the
    base's ``compute_reward`` renamed ``base_reward`` under a new ``compute_reward`` that
    removes and adds terms."""
    lines = base.source.split("\n")
    for name, value in edit.set.items():
        pattern = re.compile(rf"^{re.escape(name)} = .*$")
        lines = [f"{name} = {value!r}" if pattern.match(line) else line for line in lines]
    source = "\n".join(lines)
    tree = ast.parse(source)
    doc = ast.get_docstring(tree) or ""
    new_doc = f"Edit of {base.name}: {edit.summary()}." + (f"\n\n{doc}" if doc else "")
    new_doc = new_doc.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    lines = source.split("\n")
    first = tree.body[0] if tree.body else None
    if first is not None and isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant) \
            and isinstance(first.value.value, str):
        lines[first.lineno - 1:first.end_lineno] = [f'"""{new_doc}"""']
    else:
        lines.insert(0, f'"""{new_doc}"""\n')
    source = "\n".join(lines).rstrip("\n") + "\n"
    if not edit.remove_terms and not edit.add_terms:
        return source
    inner, k = "base_reward", 2
    while re.search(rf"^def {inner}\(", source, re.M):  # an edit of an edit: keep every level
        inner, k = f"base_reward_{k}", k + 1
    source = re.sub(r"^def compute_reward\(", f"def {inner}(", source, count=1, flags=re.M)
    body = ["", "", "def compute_reward(state, action):"]
    if base.returns_terms:
        body.append(f"    reward, terms = {inner}(state, action)")
        kept = [f"{t!r}: terms[{t!r}]" for t in base.terms if t not in edit.remove_terms]
    else:  # a bare reward becomes the term 'base'
        body += [f"    base = {inner}(state, action)", "    reward = base"]
        kept = ["'base': base"]
    for name in edit.remove_terms:
        body.append(f"    reward = reward - terms[{name!r}]")
    for name, weight, expression in edit.add_terms:
        body += [f"    {name} = {weight!r} * ({expression})", f"    reward = reward + {name}"]
    added = [f"{n!r}: {n}" for n, _, _ in edit.add_terms]
    if base.returns_terms and not base.terms:  # terms built at run time: keep them all, add the new ones
        body += ["    terms = dict(terms)"] + [f"    terms[{n!r}] = {n}" for n, _, _ in edit.add_terms]
        body.append("    return reward, terms")
    else:  # a dict literal, so an edit of this program knows its term names
        body.append(f"    return reward, {{{', '.join(kept + added)}}}")
    return source + "\n".join(body) + "\n"


# -- a base program written for another task ---------------------------------------------------
_ALWAYS_RELATED = frozenset({"success", "env_reward", "elapsed_steps", "terminated"})
_FILLER_WORDS = frozenset({"to", "of", "init", "start", "pos", "vel", "prev", "num", "n"})
_NEGATION = re.compile(r"\b(not|no|never|ignore|ignored|irrelevant|without)\b", re.I)


def term_fields(source: str) -> dict[str, set[str]]:
    """The state fields each term of ``compute_reward``'s returned dict literal reads, through
    the assignments before it (``state.x`` and ``state.prev.x`` both count as ``x``)."""
    tree = ast.parse(source)
    fn = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "compute_reward"), None)
    if fn is None:
        return {}

    def reads(node: ast.AST, env: dict[str, set[str]]) -> set[str]:
        out: set[str] = set()
        for sub in ast.walk(node):
            if isinstance(sub, ast.Attribute) and isinstance(sub.value, (ast.Name, ast.Attribute)):
                root = sub.value.value if isinstance(sub.value, ast.Attribute) and sub.value.attr == "prev" \
                    else sub.value
                if isinstance(root, ast.Name) and root.id == "state" and sub.attr != "prev":
                    out.add(sub.attr)
            elif isinstance(sub, ast.Name) and sub.id in env:
                out |= env[sub.id]
        return out

    env: dict[str, set[str]] = {}
    terms: dict[str, set[str]] = {}
    for node in ast.walk(fn):
        if isinstance(node, ast.Assign):
            used = reads(node.value, env)
            for target in node.targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        env[name.id] = env.get(name.id, set()) | used
        elif isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple) and len(node.value.elts) == 2 \
                and isinstance(node.value.elts[1], ast.Dict):
            for key, value in zip(node.value.elts[1].keys, node.value.elts[1].values):
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    terms[key.value] = reads(value, env)
    return terms


def unrelated_fields(fields: set[str], instruction: str, success_doc: str = "") -> set[str]:
    """The fields of ``fields`` that the instruction does not involve: a field whose name-words
    (``hand_to_obj``: hand, obj) include one said only in a negated sentence ("The block at
    obj_pos is not involved."), or none of which the instruction or success test uses."""
    def words(text: str) -> set[str]:
        return {w for w in re.findall(r"[a-z]+", text.lower().replace("_", " ")) if w not in _FILLER_WORDS}

    sentences = re.split(r"(?<=[.;!?])\s+", instruction)
    negated = set().union(*(words(s) for s in sentences if _NEGATION.search(s)))
    said = set().union(*(words(s) for s in sentences if not _NEGATION.search(s))) | words(success_doc)
    negated -= said
    out = set()
    for name in fields - _ALWAYS_RELATED:
        parts = words(name) or {name}
        if parts & negated or not parts & said:
            out.add(name)
    return out


def adapt_base(source: str, base_name: str, base_task: str | None, task_id: str, fields: Sequence[str],
               instruction: str, success_doc: str = "") -> tuple[str, list[str], str]:
    """A program written for another task, made a base for ``task_id``'s edits.

    Returns ``(source, flagged_terms, note)``: the program with a docstring that says what it is
    and where it came from (its own docstring kept below, marked as written for the other
    task), the terms that read fields the instruction does not involve (or fields ``task_id``'s
    view lacks), and a note for the edit prompt that names them.
    """
    missing, unrelated = {}, {}
    for term, used in term_fields(source).items():
        if used - set(fields):
            missing[term] = sorted(used - set(fields))
        elif used and not used - unrelated_fields(used, instruction, success_doc):
            unrelated[term] = sorted(used)
        elif unrelated_fields(used, instruction, success_doc):
            unrelated[term] = sorted(unrelated_fields(used, instruction, success_doc))
    flagged = list(dict.fromkeys([*missing, *unrelated]))
    origin = (f"Base for {task_id}'s edits: the library program {base_name}, written for "
              f"{base_task or 'another task'}; its terms may reward that task's behaviour.")
    lines = [origin]
    if flagged:
        lines.append("Flagged terms (they read fields this instruction does not involve): " + "; ".join(
            f"{t} ({', '.join(missing.get(t) or unrelated[t])})" for t in flagged) + ".")
    tree = ast.parse(source)
    doc = ast.get_docstring(tree) or ""
    text = "\n".join(lines) + (f"\n\nIts docstring, written for {base_task or 'another task'}:\n" + doc if doc else "")
    text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    src_lines = source.split("\n")
    first = tree.body[0] if tree.body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        src_lines[first.lineno - 1:first.end_lineno] = [f'"""{text}"""']
    else:
        src_lines.insert(0, f'"""{text}"""\n')
    note = ""
    if flagged:
        note = (f"Note: this program was written for {base_task or 'another task'}. Terms "
                f"{', '.join(flagged)} read fields this instruction does not involve: remove them "
                f"(\"remove_terms\") unless they help, and add a term for what the instruction asks.")
    return "\n".join(src_lines), flagged, note
