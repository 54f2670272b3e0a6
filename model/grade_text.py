"""Why a deal has its letter, in a manager's words: "D: 42 of expected value per hour of work, at or below the
floor of 127 an hour; by value alone B".

A deal's reasons explain its win probability; its letter comes from its expected value and value per hour against
the cut-offs fixed at training (model/grades.py), which a manager never sees. A D among reasons that all raise the
chance read as a contradiction (a manager-view audit: 174 of 500 demo deals D, none saying why).
"""

from __future__ import annotations

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
    lines = _CutoffLines(cutoffs)  # the cut-offs' words once per batch, not once per deal
    return [lines.text(grade, expected, per_hour, value_letter)
            for grade, expected, per_hour, value_letter in zip(grades, np.asarray(expected_value).tolist(),
                                                               np.asarray(value_per_hour).tolist(), by_value,
                                                               strict=True)]


class _CutoffLines:
    def __init__(self, cutoffs: GradeCutoffs) -> None:
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
            return "C: no expected value (no amount sent, and no value model to estimate one)"
        if grade == "A":
            return f"A: expected value {money_text(expected)}, at or above A's {self.a_min}"
        if grade == "B":
            return f"B: expected value {money_text(expected)}, at or above B's {self.b_min}, below A's {self.a_min}"
        return f"C: expected value {money_text(expected)}, below B's {self.b_min}"
