"""Why a deal has its letter, in a manager's words: "D: 42 of expected value per hour of work, at or below the
floor of 127 an hour; by value alone B".

A deal's reasons explain its win probability; its letter comes from its expected value and value per hour against
the cut-offs fixed at training (model/grades.py), which a manager never sees. A D among reasons that all raise the
chance read as a contradiction (a manager-view audit: 174 of 500 demo deals D, none saying why).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from model.grades import GradeCutoffs, letter_classes
from model.reason_text import money_text

FloatArray = npt.NDArray[np.float64]


def grade_texts(grades: Sequence[str], expected_value: FloatArray, value_per_hour: FloatArray,
                cutoffs: GradeCutoffs) -> list[str]:
    """One line per deal: its letter and the cut-off that put it there."""
    by_value = letter_classes(expected_value, cutoffs).tolist() if "D" in grades else grades
    lines = _cutoff_lines(cutoffs)
    return [lines.text(grade, expected, per_hour, value_letter)
            for grade, expected, per_hour, value_letter in zip(grades, np.asarray(expected_value).tolist(),
                                                               np.asarray(value_per_hour).tolist(), by_value,
                                                               strict=True)]


@functools.lru_cache(maxsize=8)
def _cutoff_lines(cutoffs: GradeCutoffs) -> _CutoffLines:
    """The cut-offs' words, once per model (a model keeps its cut-offs), not once per request."""
    return _CutoffLines(cutoffs)


class _CutoffLines:
    def __init__(self, cutoffs: GradeCutoffs) -> None:
        self.cutoffs = cutoffs
        self.priced = cutoffs.a_min > 0
        self.a_min, self.b_min = money_text(cutoffs.a_min), money_text(cutoffs.b_min)
        self.floor = money_text(cutoffs.d_floor_per_hour or 0.0)

    def text(self, grade: str, expected: float, per_hour: float, by_value: str) -> str:
        if grade == "D":
            return (f"D: {money_text(per_hour)} of expected value per hour of work, at or below the floor of "
                    f"{self.floor} an hour; by value alone {by_value}")
        if not self.priced:
            return "C: the model had no deal values to cut classes on when it was trained, so every deal is C"
        if expected != expected:
            return "C: no expected value (no amount sent, or 0, and no value model to estimate one)"
        if grade == "A":
            return f"A: expected value {money_text(expected)}, at or above A's {self.a_min}"
        if grade == "B":
            shown, a_min = _apart(expected, self.cutoffs.a_min, self.a_min)
            return f"B: expected value {shown}, at or above B's {self.b_min}, below A's {a_min}"
        shown, b_min = _apart(expected, self.cutoffs.b_min, self.b_min)
        return f"C: expected value {shown}, below B's {b_min}"


def _apart(value: float, cut: float, cut_text: str) -> tuple[str, str]:
    """A value and the cut-off it is below, in words that tell them apart: whole numbers, or with cents where
    rounding made them one ("C: expected value 976, below B's 976" for 976.45 against 976.5)."""
    shown = money_text(value)
    return (shown, cut_text) if shown != cut_text else (f"{value:,.2f}", f"{cut:,.2f}")
