"""Untrusted text (term names, a reward program's errors, robot strings, log messages) reaches
the terminal with no control character: escape sequences that would clear the screen, set the
window title or write the clipboard (OSC 52) are printed as visible escapes, while rich's own
colours and control codes are kept."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys

from rich.control import Control
from rich.text import Text

from rewardgym.cli.console import SafeConsole
from rewardgym.text import ESCAPE_CONTROL_FILTER, escape_control

CLEAR, TITLE, OSC52 = "\x1b[2J", "\x1b]0;pwned\x07", "\x1b]52;c;cHduZWQ=\x07"


def _run_check(program, *, colour: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("NO_COLOR", None)
    if colour:
        env["FORCE_COLOR"] = "1"  # rich writes colours as to a terminal: its own ESC codes appear
    else:
        env.pop("FORCE_COLOR", None)
    return subprocess.run([sys.executable, "-m", "rewardgym.cli.main", "check", str(program), "--task",
                           "HalfCheetah-Run", "--steps", "5", "--num-envs", "1"], capture_output=True, timeout=180,
                          env=env)


def _assert_inert(text: str) -> None:
    assert "\x1b" not in text and "\x07" not in text
    assert not [c for c in text if 0x80 <= ord(c) <= 0x9F or ord(c) < 0x20 and c not in "\n\t"], repr(text)
    assert "\u202e" not in text


def _hostile_names_program(tmp_path):
    program = tmp_path / "names.py"
    # escapes in the program's source (the sandbox allows string literals): the names hold real ESC, BEL, C1
    program.write_text("def compute_reward(state, action):\n"
                       "    speed = state.torso_lin_vel[:, 0]\n"
                       "    return speed, {'clear\\x1b[2J': speed, 'title\\x1b]0;pwned\\x07': speed * 2.0,\n"
                       "                   'clip\\x1b]52;c;cHduZWQ=\\x07': speed * 3.0, 'csi\\x9b31m\\u202eevil': speed}\n")
    return program


def test_check_escapes_control_characters_in_term_names(tmp_path):
    result = _run_check(_hostile_names_program(tmp_path))
    assert result.returncode == 0, result.stderr
    out, err = result.stdout.decode(), result.stderr.decode()
    _assert_inert(out + err)
    for shown in ("clear\\x1b[2J", "title\\x1b]0;pwned\\x07", "clip\\x1b]52;c;cHduZWQ=\\x07", "csi\\x9b31m\\u202eevil"):
        assert shown in out, out
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert len({len(line) for line in rows}) == 1, out  # the table is measured on the escaped names


def test_check_with_forced_colour_keeps_rich_codes_but_not_the_programs(tmp_path):
    result = _run_check(_hostile_names_program(tmp_path), colour=True)
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode() + result.stderr.decode()
    assert "\x1b[" in out  # rich's own styling
    for raw in (CLEAR, TITLE, OSC52, "\x1b]", "\x07", "\x9b", "\u202e"):
        assert raw not in out
    assert "clear\\x1b[2J" in out and "clip\\x1b]52;c;cHduZWQ=\\x07" in out


def test_check_escapes_a_programs_error_message(tmp_path):
    program = tmp_path / "raise.py"
    program.write_text("def compute_reward(state, action):\n"
                       "    raise ValueError('bad\\x1b[2J\\x1b]0;pwned\\x07\\x1b]52;c;cHduZWQ=\\x07\\u202evalue')\n")
    result = _run_check(program)
    assert result.returncode == 1, result.stderr
    err = result.stderr.decode()
    _assert_inert(result.stdout.decode() + err)
    assert "ValueError: bad\\x1b[2J\\x1b]0;pwned" in err and "\\u202evalue" in err, err


# -- escape_control ---------------------------------------------------------------------------------
def test_escape_control_escapes_c0_del_c1_and_bidi_visibly():
    assert escape_control(CLEAR) == "\\x1b[2J"
    assert escape_control(TITLE) == "\\x1b]0;pwned\\x07"
    assert escape_control("a\rb\x08c\x00d\x7fe") == "a\\x0db\\x08c\\x00d\\x7fe"
    assert escape_control("\x9b31m\x85\x9d") == "\\x9b31m\\x85\\x9d"  # C1 (CSI, NEL, OSC)
    assert escape_control("abc\u202edef\u2066x\u2069\u200f\u200b\ufeff") == \
        "abc\\u202edef\\u2066x\\u2069\\u200f\\u200b\\ufeff"
    assert escape_control("a\u2028b\u2029") == "a\\u2028b\\u2029"  # line / paragraph separators
    assert escape_control("tag\U000e0041") == "tag\\U000e0041"
    assert escape_control("lone \udc80") == "lone \\udc80"  # surrogateescape'd bytes become printable


def test_escape_control_keeps_newline_tab_and_ordinary_unicode():
    text = "line 1\n\tcafé → 日本語 naïve 🤖 \u00a0[bold]\\x1b"
    assert escape_control(text) == text
    assert escape_control("") == ""
    once = escape_control("x\x1b\u202e\x9b")
    assert escape_control(once) == once  # escaping twice changes nothing


def test_escape_filter_escapes_log_messages():
    record = logging.LogRecord("rewardgym.intrinsic", logging.WARNING, __file__, 1, "failed: %s", (TITLE,), None)
    assert ESCAPE_CONTROL_FILTER.filter(record)
    assert record.getMessage() == "failed: \\x1b]0;pwned\\x07"
    import rewardgym.intrinsic  # noqa: F401 - attaches the filter to the package's logger

    assert ESCAPE_CONTROL_FILTER in logging.getLogger("rewardgym.intrinsic").filters


# -- SafeConsole ------------------------------------------------------------------------------------
def _console(**kwargs) -> tuple[SafeConsole, io.StringIO]:
    out = io.StringIO()
    return SafeConsole(file=out, force_terminal=True, color_system="standard", markup=False, highlight=False,
                       width=120, **kwargs), out


def test_safe_console_keeps_rich_colour_and_control_but_escapes_user_text():
    console, out = _console()
    console.print(Text.assemble(("error: ", "bold red"), f"name {CLEAR}{OSC52}\u202e"))
    console.print(f"plain {TITLE}", style="green")
    console.control(Control.clear())  # rich's own clear-screen: a control segment, kept
    text = out.getvalue()
    assert "\x1b[1;31merror: " in text and "\x1b[32m" in text  # SGR colour codes from rich's styles
    assert "name \\x1b[2J\\x1b]52;c;cHduZWQ=\\u202e" in text  # (a Text drops BEL itself)
    assert "plain \\x1b]0;pwned\\x07" in text
    assert text.count("\x1b[2J") == 1 and text.endswith("\x1b[2J")  # only rich's own
    assert "\x1b]" not in text and "\x07" not in text and "\u202e" not in text


def test_safe_console_escapes_table_cells_capture_and_no_color():
    from rich.table import Table

    console, out = _console()
    table = Table("term", "value")
    table.add_row(f"t{CLEAR}", "1")
    with console.capture() as capture:
        console.print(table)
    assert "t\\x1b[2J" in capture.get() and CLEAR not in capture.get()
    plain, plain_out = _console(no_color=True)
    plain.print(Text(f"x{TITLE}", style="red"))
    assert plain_out.getvalue() == "x\\x1b]0;pwned\n"  # no colour, and a Text drops BEL itself


def test_cli_consoles_are_safe_consoles():
    from rewardgym.cli import main

    assert isinstance(main.console, SafeConsole) and isinstance(main.err, SafeConsole)
