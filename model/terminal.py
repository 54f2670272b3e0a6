"""Text others wrote, made safe to print on a terminal: shown, never acted on.

The commands print names, notes and reasons that came from elsewhere (a manager's name sent to /v1/judgements,
a registry's reasons, a CRM's ids). A security review cleared an operator's screen and printed a forged table
row through `dealscore quality` with escape codes and a newline in such a name.
"""

from __future__ import annotations

import re

__all__ = ["terminal_cell", "terminal_text"]

# Characters a terminal acts on rather than shows: C0 and C1 controls, and the bidi overrides and isolates that
# reorder what follows them. A cell escapes newlines and tabs too (one cell, one line); a whole text keeps them.
_CONTROLS = "\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"
_IN_TEXT = re.compile(f"[{_CONTROLS}]")
_IN_CELL = re.compile(f"[{_CONTROLS}\t\n]")


def _escaped(found: re.Match[str]) -> str:
    return found.group().encode("unicode_escape").decode("ascii")


def terminal_text(text: str) -> str:
    """`text` with each control character written as its escape (\\x1b, \\u202e); its lines and tabs kept."""
    return _IN_TEXT.sub(_escaped, text)


def terminal_cell(text: str) -> str:
    """One table cell (or one field of a line) of text others wrote: on one line, every control escaped."""
    return _IN_CELL.sub(_escaped, text)
