"""The CLI's rich console: whatever it prints reaches the terminal with no control character.

Everything a rich console prints (tables, errors, warnings, log lines, status and progress
text, prompts, tracebacks) becomes a list of :class:`rich.segment.Segment` that
``Console._render_buffer`` turns into the string written to the terminal. :class:`SafeConsole`
applies :func:`rewardgym.text.escape_control` to the text of every segment there, except
rich's own control segments (cursor moves, clear line, ... of live displays); rich's colours
are added around the escaped text by ``Style.render`` in the same place, so they are kept.
Untrusted text is therefore escaped by construction, whichever print call carries it.
Strings are also escaped in ``render_str``, before layout, so that table columns are as wide as
the escaped text (a ``Text`` built by the caller is escaped only at output: its width may be off
by a few cells, never its content).

Only this module, :mod:`rewardgym.text` and rich are imported here.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from rich.console import Console
from rich.segment import Segment
from rich.text import Text

from rewardgym.text import escape_control

__all__ = ["SafeConsole"]

if not callable(getattr(Console, "_render_buffer", None)):  # fail closed if rich moves the hook
    raise ImportError("rewardgym.cli.console needs rich's Console._render_buffer (rich 13-15)")


def _escaped(buffer: Iterable[Segment]) -> Iterator[Segment]:
    for segment in buffer:
        if segment.control:  # rich's own escape sequence (Control): kept
            yield segment
        else:
            text = escape_control(segment.text)
            yield segment if text is segment.text else segment._replace(text=text)


class SafeConsole(Console):
    """A :class:`rich.console.Console` that escapes control and bidi characters in all text it
    writes (see :func:`rewardgym.text.escape_control`); rich's styles and control codes are kept.

    The hook is ``Console._render_buffer`` (rich 13-15), through which a console's terminal
    output, ``capture()`` and pager output pass. Not covered: ``export_*`` of a recording console
    and the legacy Windows renderer (which writes through the win32 API, not escape codes).
    """

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        """The guarantee: every non-control segment's text is escaped as it becomes output."""
        return super()._render_buffer(_escaped(buffer))

    def render_str(self, text: str, **kwargs: Any) -> Text:
        """Strings (table cells, titles, printed messages) are escaped before layout as well, so
        that columns are measured on the text that will be shown; not needed for safety."""
        return super().render_str(escape_control(text), **kwargs)
