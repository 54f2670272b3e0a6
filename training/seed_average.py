"""Boosters grown with different random seeds, averaged into one booster.

Each booster samples features (`feature_fraction`) and deals (`bagging_fraction`) with its seed. Where the
signal is weak, early stopping keeps a handful of rounds, and those few trees rest on a few random split
choices: on the bank marketing data, training seeds 0-9 gave a holdout AUC of 0.427 to 0.728 with one
booster (the audit's "clients table" run that stopped at one round was such a draw), and 0.721 to 0.728 with
the boosters of several seeds averaged (training.fit.TrainConfig.seed_members says when).

The average is made one LightGBM booster, so scoring, reasons and the artifact treat it as any other: a
booster's raw score is the sum of its trees' leaf values (the first tree also carries the starting score),
so scaling every member's leaf values by 1/K and putting all their trees in one model gives the members'
mean margin, tree for tree.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import lightgbm as lgb

# The lines of a tree in LightGBM's model text that hold outputs (the rest are structure, gains, counts and
# hessian sums, which averaging leaves alone). internal_value is what LightGBM's own pred_contrib reads.
_OUTPUT_LINES = ("leaf_value=", "internal_value=")
_TREE_HEADER = re.compile(r"^Tree=\d+$", re.MULTILINE)
_END_OF_TREES = "\nend of trees\n"


def averaged_booster(boosters: Sequence[lgb.Booster]) -> lgb.Booster:
    """One booster whose raw score is the mean of the boosters' raw scores at their best iterations.

    The boosters must be grown on the same training data (same features and bins), as seeds of one fit are."""
    if not boosters:
        raise ValueError("no booster to average")
    if len(boosters) == 1:
        return boosters[0]
    share = 1.0 / len(boosters)
    header = ""
    trees: list[str] = []
    tail = ""
    for number, booster in enumerate(boosters):
        text = booster.model_to_string(num_iteration=booster.best_iteration or -1)
        member_header, member_trees, member_tail = _parts(text)
        if number == 0:
            header, tail = member_header, member_tail
        elif member_header != header:
            raise ValueError("boosters grown on different data (their model headers differ) cannot be averaged")
        trees.extend(_scaled(tree, share) for tree in member_trees)
    renumbered = [_TREE_HEADER.sub(f"Tree={i}", tree, count=1) for i, tree in enumerate(trees)]
    return lgb.Booster(model_str=header + "".join(renumbered) + tail)


def _parts(text: str) -> tuple[str, list[str], str]:
    """(header without tree_sizes, the tree blocks, the rest from "end of trees") of a model text."""
    # Trees are looked for before "end of trees" only: after it, feature_importances lists one "name=count" line
    # per feature, and a feature named Tree would read as one.
    end = text.index(_END_OF_TREES) + 1
    starts = [m.start() for m in _TREE_HEADER.finditer(text, 0, end)]
    if not starts:
        raise ValueError("a booster without trees cannot be averaged")
    # tree_sizes gives each tree's length in bytes, for parallel loading; the rewritten trees change length,
    # and LightGBM reads the trees one after the other without it.
    header = "".join(line for line in text[:starts[0]].splitlines(keepends=True)
                     if not line.startswith("tree_sizes="))
    blocks = [text[a:b] for a, b in zip(starts, [*starts[1:], end], strict=True)]
    if any("\nis_linear=1" in block for block in blocks):
        raise ValueError("linear trees cannot be averaged by their leaf values")
    return header, blocks, text[end:]


def _scaled(tree: str, share: float) -> str:
    lines = tree.split("\n")
    for i, line in enumerate(lines):
        for prefix in _OUTPUT_LINES:
            if line.startswith(prefix):
                values = line[len(prefix):].split(" ")
                lines[i] = prefix + " ".join(repr(float(v) * share) for v in values if v)
    return "\n".join(lines)
