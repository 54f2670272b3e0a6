"""A tree ensemble's output for a deal that did not send some inputs the trees always saw.

When every training deal had a text column (a product, a lead source, a client's industry), the trees
learnt no branch for it missing, and LightGBM sends a missing category down the right branch of every
categorical split whatever `missing_type` says: a deal without its product was scored as if it had
whichever products happened to sit on the right of each split. Measured on the demo model, leaving the
product out of every later deal moved their mean p_win by -0.062, the lead source by -0.027.

Here such an input is averaged out instead, tree by tree: where a split asks about an input not sent,
the deal goes both ways, weighted by the share of training deals that went each way (the node counts the
booster keeps), as C4.5 treats a missing value and the path-dependent TreeSHAP a feature left out. The
training deals that reach a node already agree with the deal on every split above it, so "not sent" reads
as "like the training deals that match the rest of the deal", not as the column's overall mix (averaging
over the column's overall level shares made the product and industry shifts worse: levels go with the
rest of the deal).

The splits on the inputs sent are decided here in numpy, as LightGBM decides them (a numeric threshold
with its missing-value rule; a category set; NaN and negative categories to the right), and the leaves'
weights are the products of their paths' branch weights.
tests/test_unsent_paths.py checks the leaves against LightGBM's own on every training deal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.intp]

_ZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold (a float: 1.0000000180025095e-35)
_MISSING_TYPES = {"None": 0, "Zero": 1, "NaN": 2}
# Values per block of deals: a block gathers (deals x leaves x deepest path) branch weights; 2 million keep it
# at 16 MB whatever the model (the demo model's 980 leaves, at most 6 splits deep: 340 deals a block).
_BLOCK_VALUES = 2_000_000


@dataclass(frozen=True)
class UnsentPaths:
    """Every split of a booster's trees as arrays, and every leaf's path of branches, stacked tree after tree in
    the leaf order of model.tree_paths.PathCredits."""

    feature: IntArray  # (nodes,)
    categorical: BoolArray
    threshold: FloatArray  # numeric splits: go left when value <= threshold
    default_left: BoolArray  # numeric splits: where a missing value goes
    missing_type: npt.NDArray[np.int8]  # 0 None (NaN read as 0), 1 Zero (0 and NaN are missing), 2 NaN
    category_row: IntArray  # categorical splits: the row of `categories` holding their set (-1 otherwise)
    categories: BoolArray  # (categorical splits, largest category + 1): True where a category goes left
    left_share: FloatArray  # share of the node's training deals that went left
    # (leaves, deepest path): each leaf's path as branches: node i's left is i, its right nodes + i; the padding
    # beyond a leaf's depth is 2 x nodes, a branch of weight 1.
    path: IntArray

    @classmethod
    def of_booster(cls, booster: Any) -> UnsentPaths:
        nodes: list[dict[str, Any]] = []
        paths: dict[int, list[tuple[int, bool]]] = {}  # leaf row -> (split, went left) from the root down
        first_leaf = 0
        thresholds = _thresholds(booster.model_to_string())
        for tree in booster.dump_model()["tree_info"]:
            exact = thresholds.get(int(tree.get("tree_index", -1)), [])
            leaves = int(tree["num_leaves"])
            # (node, ids of the splits above it and their sides)
            stack: list[tuple[dict[str, Any], list[tuple[int, bool]]]] = [(tree["tree_structure"], [])]
            while stack:
                node, path = stack.pop()
                if "split_feature" not in node:
                    paths[first_leaf + int(node.get("leaf_index", 0))] = path
                    continue
                split = len(nodes)
                index = int(node.get("split_index", -1))
                if node["decision_type"] != "==" and 0 <= index < len(exact):
                    # The model text's threshold: the JSON dump writes any above 1e300 as 1e300.
                    node = {**node, "threshold": exact[index]}
                nodes.append(node)
                stack.append((node["left_child"], [*path, (split, True)]))
                stack.append((node["right_child"], [*path, (split, False)]))
            first_leaf += leaves
        n_nodes = len(nodes)
        categorical = np.array([n["decision_type"] == "==" for n in nodes], dtype=bool)
        sets = [[int(c) for c in str(n["threshold"]).split("||")] for n in nodes if n["decision_type"] == "=="]
        width = max((max(s) for s in sets), default=-1) + 1
        categories = np.zeros((max(len(sets), 1), max(width, 1)), dtype=bool)  # one empty row when none
        for row, members in enumerate(sets):
            categories[row, members] = True
        category_row = np.full(n_nodes, -1, dtype=np.intp)
        category_row[categorical] = np.arange(len(sets))
        counts = np.array([[_count(n["left_child"]), _count(n["right_child"])] for n in nodes],
                          dtype=np.float64).reshape(n_nodes, 2)
        totals = counts.sum(axis=1)
        # A node no training deal reached (a count of 0 on both sides) is split evenly.
        left_share = np.where(totals > 0, counts[:, 0] / np.maximum(totals, 1.0), 0.5)

        depth = max((len(steps) for steps in paths.values()), default=0)
        branches = np.full((first_leaf, max(depth, 1)), 2 * n_nodes, dtype=np.intp)
        for leaf, steps in paths.items():
            branches[leaf, :len(steps)] = [split if went_left else n_nodes + split for split, went_left in steps]

        return cls(
            feature=np.array([int(n["split_feature"]) for n in nodes], dtype=np.intp),
            categorical=categorical,
            threshold=np.array([0.0 if c else float(n["threshold"]) for n, c in zip(nodes, categorical, strict=True)]),
            default_left=np.array([bool(n.get("default_left", False)) for n in nodes], dtype=bool),
            missing_type=np.array([_MISSING_TYPES.get(str(n.get("missing_type", "None")), 0) for n in nodes],
                                  dtype=np.int8),
            category_row=category_row, categories=categories, left_share=left_share, path=branches,
        )

    def goes_left(self, features: FloatArray) -> BoolArray:
        """(deals, nodes): whether each deal goes left at each split, decided as LightGBM decides it."""
        values = features[:, self.feature]
        nan = np.isnan(values)
        # Numeric: NaN is read as 0 unless the missing type is NaN; a missing value takes the default side.
        numbers = np.where(nan & (self.missing_type != 2), 0.0, values)
        missing = ((self.missing_type == 1) & (np.abs(numbers) <= _ZERO)) | ((self.missing_type == 2) & nan)
        with np.errstate(invalid="ignore"):
            numeric_left = np.where(missing, self.default_left, numbers <= self.threshold)
            # Categorical: the value truncated towards 0 is the category (-0.5 is 0); NaN and negative categories
            # go right; a category goes left when in the split's set.
            valid = ~nan & (values > -1.0)
            # (a category beyond every set goes right; the bound also keeps a numeric feature's 1e308 out of the cast)
            listed = valid & (values < self.categories.shape[1])
        code = np.where(listed, values, 0.0).astype(np.intp)
        in_set = self.categories[np.maximum(self.category_row, 0), code]
        left: BoolArray = np.where(self.categorical, listed & in_set, numeric_left)
        return left

    def leaf_weights(self, features: FloatArray, unsent: BoolArray) -> FloatArray:
        """(deals, leaves): each leaf's weight in its tree for each deal, 1 at the one leaf a deal reaches
        when it sent every input a tree asks about; `unsent` (deals, features) marks the inputs to average
        out. Each tree's weights add up to 1."""
        out = np.empty((features.shape[0], self.path.shape[0]))
        step = max(1, _BLOCK_VALUES // self.path.size)
        for start in range(0, features.shape[0], step):
            block = slice(start, start + step)
            left = np.where(unsent[block][:, self.feature], self.left_share, self.goes_left(features[block]))
            branches = np.concatenate((left, 1.0 - left, np.ones((left.shape[0], 1))), axis=1)
            # A leaf's weight: the product of its path's branches (a row's product never depends on other rows).
            out[block] = branches[:, self.path].prod(axis=2)
        return out


def _thresholds(model_text: str) -> dict[int, list[float]]:
    """Each tree's split thresholds by split index, as the model text writes them (17 significant digits)."""
    out: dict[int, list[float]] = {}
    tree = -1
    for line in model_text.splitlines():
        if line.startswith("Tree="):
            tree = int(line[5:])
        elif line.startswith("threshold=") and tree >= 0:
            out[tree] = [float(v) for v in line[10:].split()]
    return out


def _count(node: dict[str, Any]) -> float:
    return float(node.get("internal_count", node.get("leaf_count", 0)))
