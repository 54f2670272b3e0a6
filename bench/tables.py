"""Plain-text tables for the benchmarks' output: fixed-width columns, numbers right-aligned."""

from __future__ import annotations

from collections.abc import Sequence


def format_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]],
                 notes: Sequence[str] = ()) -> str:
    """`title`, a header line, a rule, the rows, then free-text notes (one per line)."""
    cells = [[str(c) for c in header], *[[_cell(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells if i < len(row)) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        parts = [value.ljust(widths[i]) if i == 0 or not _numeric(value) else value.rjust(widths[i])
                 for i, value in enumerate(row)]
        return "  ".join(parts).rstrip()

    out = [title, line(cells[0]), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in cells[1:]]
    out += list(notes)
    return "\n".join(out)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "nan" if value != value else f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _numeric(value: str) -> bool:
    return value.replace(",", "").replace(".", "").replace("-", "").replace("x", "").isdigit() or value in ("nan", "-")
