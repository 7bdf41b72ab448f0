"""Text that reaches a terminal or a report, made inert.

Reward programs, their error messages, term names, LLM replies, robot strings and run
directories are untrusted text. Printed as they are, ``"\\x1b[2J"`` clears the screen,
``"\\x1b]0;...\\x07"`` sets the window title, ``"\\x1b]52;c;...\\x07"`` writes the
clipboard, and a right-to-left override (U+202E) makes the text shown differ from the
text stored. :func:`escape_control` turns every such character into a visible escape.

This module imports nothing from rewardgym (and nothing outside the standard library), so
that any layer may use it. The CLI applies it to everything it prints through
:class:`rewardgym.cli.console.SafeConsole`.
"""

from __future__ import annotations

import logging
import unicodedata

__all__ = ["ESCAPE_CONTROL_FILTER", "EscapeControlFilter", "escape_char", "escape_control"]

# Unicode categories that are escaped: control (Cc), format (Cf: bidi embeddings, overrides and
# isolates, marks, zero-width characters, ...), surrogates (Cs: not encodable), line and
# paragraph separators (Zl, Zp: some terminals break lines on them).
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_KEPT = frozenset("\n\t")


def escape_char(char: str) -> str:
    """The visible escape of one character: ``\\xhh`` below U+0100, ``\\uhhhh`` in the BMP,
    ``\\Uhhhhhhhh`` above it (as Python writes them)."""
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape_control(text: str) -> str:
    """``text`` with every control or format character replaced by a visible escape.

    The rule: a character is escaped when its Unicode category is Cc (control: C0, DEL and C1;
    except ``"\\n"`` and ``"\\t"``), Cf (format: the bidi overrides and isolates U+202A-U+202E
    and U+2066-U+2069, LRM/RLM, zero-width characters, soft hyphen, BOM, ...), Cs (lone
    surrogate), Zl or Zp (line / paragraph separator). It is written as Python writes it in a
    string literal: ESC as the four characters ``\\x1b``, U+202E as ``\\u202e``. Everything
    else, including non-ASCII letters, symbols and emoji, is kept. The result contains no
    character that a terminal interprets except newline and tab, and escaping it again changes
    nothing.
    """
    if text.isprintable():  # the common case: no control, format or separator character at all
        return text
    out = []
    for char in text:
        if char not in _KEPT and unicodedata.category(char) in _ESCAPED_CATEGORIES:
            out.append(escape_char(char))
        else:
            out.append(char)
    return "".join(out)


class EscapeControlFilter(logging.Filter):
    """A :mod:`logging` filter that escapes each record's message with :func:`escape_control`
    (the arguments are merged into it), so that whichever handler prints the record prints no
    control character. Attach :data:`ESCAPE_CONTROL_FILTER` to a logger whose messages quote
    untrusted text: ``logging.getLogger(name).addFilter(ESCAPE_CONTROL_FILTER)`` (a no-op if it
    is already attached)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        escaped = escape_control(message)
        if escaped != message:
            record.msg, record.args = escaped, None
        return True


ESCAPE_CONTROL_FILTER = EscapeControlFilter()
