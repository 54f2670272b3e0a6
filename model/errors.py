"""Every error dealscore raises on purpose, in one tree.

DealscoreError (status 400, code "bad_request")
├── ContractViolation (422, "invalid_input"): input breaks the data contract; carries every Problem
├── InsufficientData (422, "insufficient_data"): too few closed deals to fit a model
├── ArtifactError (409, "artifact_invalid"): a model artifact is missing, tampered or incompatible
├── NotFound (404, "not_found")
├── PayloadTooLarge (413, "payload_too_large")
└── NotReady (503, "not_ready"): no model loaded and warmed yet

The service maps each to the one error envelope; the command line prints the message and exits non-zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def counted(n: int, noun: str) -> str:
    """"1 problem", "3 problems": messages read as sentences, not "1 problem(s)"."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where, what was expected, what came."""

    field: str
    expected: str
    got: str
    table: str | None = None
    rows: tuple[int, ...] = ()
    count: int = 0

    def describe(self) -> str:
        where = f"{self.table}.{self.field}" if self.table else self.field
        text = f"{where}: expected {self.expected}, got {self.got}"
        return text + self._rows_note()

    def as_detail(self) -> dict[str, str]:
        location = f"{self.table}.{self.field}" if self.table else self.field
        return {"field": location, "expected": self.expected, "got": self.got + self._rows_note()}

    def _rows_note(self) -> str:
        """" (row 6)", " (rows 6, 9 and 5 more)", or nothing without rows."""
        if not self.rows:
            return ""
        more = self.count - len(self.rows)
        one = max(self.count, len(self.rows)) == 1
        return (f" ({'row' if one else 'rows'} {', '.join(str(r) for r in self.rows)}"
                + (f" and {more} more" if more > 0 else "") + ")")


class DealscoreError(Exception):
    status: int = 400
    code: str = "bad_request"
    # Nothing is wrong with the input: something it needs was busy or away (a held lock, a database down). A
    # scheduler may simply run the command again later (the CLI exits 4, not 2).
    transient: bool = False

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems: list[Problem] = list(problems or [])

    def report(self) -> str:
        """The message followed by one line per problem, for a terminal."""
        lines = [self.message]
        lines.extend(f"  - {p.describe()}" for p in self.problems)
        return "\n".join(lines)


class SourceUnavailable(DealscoreError):
    """A database source that could not be reached: down, or the network."""

    status = 503
    code = "source_unavailable"
    transient = True


class ContractViolation(DealscoreError):
    status = 422
    code = "invalid_input"


class InsufficientData(DealscoreError):
    status = 422
    code = "insufficient_data"


class ArtifactError(DealscoreError):
    status = 409
    code = "artifact_invalid"


class NotFound(DealscoreError):
    status = 404
    code = "not_found"


class PayloadTooLarge(DealscoreError):
    status = 413
    code = "payload_too_large"


class NotReady(DealscoreError):
    status = 503
    code = "not_ready"


@dataclass
class ProblemList:
    """Collects problems so validation can report all of them at once, not the first."""

    items: list[Problem] = field(default_factory=list)

    def add(self, problem: Problem) -> None:
        self.items.append(problem)

    def raise_if_any(self, message: str) -> None:
        if self.items:
            raise ContractViolation(f"{message}: {counted(len(self.items), 'problem')}", self.items)
