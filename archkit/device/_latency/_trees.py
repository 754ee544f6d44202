"""Tree sums (xgboost's margins) of kernel rows of several kinds, each kind with its own trees.

The latency model stores each kind's trees as xgboost's own JSON and never needs xgboost to
predict: :func:`tree_sums` reads them into an evaluator. Rows are ``(n, features + 1)`` float64
arrays whose last column is the row's kind (its index among the kinds); :meth:`margin` is the
sum of the row's kind's trees plus that kind's base score (0 for a kind without trees).

Two evaluators, one chosen:

- :class:`OnnxTrees`, where ``onnx`` and ``onnxruntime`` are installed: every kind's trees in one
  onnxruntime ``TreeEnsembleRegressor``, built in memory on the first prediction that needs
  trees (both are imported then, not when a model loads). It is what predictions use: a cold
  MobileNetV2 1.0/224's 38 new kernels in ~12 us on the host model (41 trees for its two
  convolution kinds), one kernel in ~5 us.
- :class:`NumpyTrees`, the fallback: the ``tvm`` and ``search`` installs have no onnxruntime,
  and predicting must work there too. It walks padded trees level by level (~35 us for the same
  38 kernels, ~16 us for one). Tests check both against xgboost's own ``inplace_predict``.

Both compare in float32 as xgboost does (``x < split`` goes left; features are never missing),
so both reach xgboost's leaves; the numpy walk sums them in float64, onnxruntime in double
rounded to a float32 result (a margin within ~3e-8 of the numpy walk's).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from archkit.device._latency._errors import LatencyModelError

__all__ = ["NumpyTrees", "OnnxTrees", "tree_sums", "xgboost_trees"]


def xgboost_trees(model: Any) -> tuple[list[dict[str, Any]], float]:
    """The trees of an xgboost JSON model (``save_raw("json")``) and its base score (in margin
    units: squared error's link is the identity); none and 0 for ``None``.

    Raises:
        LatencyModelError: A model this evaluation does not implement (not plain regression
            trees on numeric splits).
    """
    if model is None:
        return [], 0.0
    learner = model["learner"]
    booster = learner["gradient_booster"]
    trees = booster["model"]["trees"]
    objective = learner["objective"]["name"]
    if (booster["name"] != "gbtree" or objective != "reg:squarederror"
            or any(any(tree["split_type"]) for tree in trees)):
        raise LatencyModelError(
            f"xgboost model with booster {booster['name']!r}, objective {objective!r} or "
            "categorical splits: only gbtree regression on numeric splits is evaluated"
        )
    base_score = float(str(learner["learner_model_param"]["base_score"]).strip("[]"))
    return trees, base_score


def tree_sums(kinds: list[Any], features: int) -> NumpyTrees | OnnxTrees:
    """The evaluator of these kinds' trees (each an xgboost JSON model or ``None``, in kind
    index order) for rows of ``features`` features and the kind: onnxruntime's where installed.

    Raises:
        LatencyModelError: Trees it cannot evaluate.
    """
    parsed = [xgboost_trees(model) for model in kinds]
    if all(_installed(name) for name in ("onnx", "onnxruntime")):
        return OnnxTrees(parsed, features)
    return NumpyTrees(parsed, features)


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # blocked (sys.modules entry None) or broken
        return False


class OnnxTrees:
    """Every kind's trees in one onnxruntime ``TreeEnsembleRegressor``.

    The kind is the input's last column. Tree ``j`` of the ensemble holds every kind's
    ``j``-th tree below a few splits on the kind (a binary search over the kind indices, so
    each row descends into its own kind's tree, or to a 0 leaf where its kind has fewer trees),
    and one last tree leads to each kind's base score the same way. Every node is a
    ``BRANCH_LT`` (xgboost's "x < split goes left", true = left): onnxruntime evaluates trees of
    one node mode faster. Merging the kinds' trees by position (84 trees for the host model
    instead of 161 side by side, each behind its own kind test) halves the time.
    The input is double holding float32 values (xgboost's comparisons exactly, with the leaves
    summed in double); the operator's output is float32.
    """

    def __init__(self, parsed: list[tuple[list[dict[str, Any]], float]], features: int) -> None:
        self.features = features
        self._attributes = _ensemble_attributes(parsed, features)
        self._run: Any = None

    def margin(self, x: Any) -> Any:
        """Each row's tree sum plus its kind's base score (float64, n)."""
        import numpy as np

        if self._run is None:
            self._run = self._session().run
        rounded = x.astype(np.float32).astype(np.float64)
        return self._run(None, {"x": rounded})[0].reshape(-1).astype(np.float64)

    def _session(self) -> Any:
        import onnxruntime as ort
        from onnx import TensorProto, helper

        width = self.features + 1
        node = helper.make_node("TreeEnsembleRegressor", ["x"], ["margin"], domain="ai.onnx.ml",
                                n_targets=1, aggregate_function="SUM", post_transform="NONE",
                                **self._attributes)
        graph = helper.make_graph(
            [node], "kernel_trees",
            [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [None, width])],
            [helper.make_tensor_value_info("margin", TensorProto.FLOAT, [None, 1])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                        helper.make_opsetid("ai.onnx.ml", 3)])
        options = ort.SessionOptions()
        # One row takes microseconds: a thread pool would cost more than it saves.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        return ort.InferenceSession(model.SerializeToString(), options,
                                    providers=["CPUExecutionProvider"])


def _ensemble_attributes(parsed: list[tuple[list[dict[str, Any]], float]],
                         features: int) -> dict[str, list]:
    """The ``TreeEnsembleRegressor`` attributes of :class:`OnnxTrees` (node ids count from each
    tree's root, listed first)."""
    names = ("treeids", "nodeids", "featureids", "values", "modes", "truenodeids",
             "falsenodeids")
    nodes: dict[str, list] = {name: [] for name in names}
    targets: dict[str, list] = {name: [] for name in ("treeids", "nodeids", "ids", "weights")}
    kind_column = features
    longest = max([len(trees) for trees, _ in parsed] + [0])
    # Per ensemble tree, per kind index: an xgboost tree, a leaf value, or nothing (a 0 leaf).
    members = [{k: trees[j] for k, (trees, _) in enumerate(parsed) if j < len(trees)}
               for j in range(longest)]
    members.append({k: base for k, (_, base) in enumerate(parsed)})
    for tree_id, by_kind in enumerate(members):
        rows: list[tuple] = []  # (feature, value, true id, false id), or (leaf weight,)
        _kind_search(by_kind, 0, len(parsed), kind_column, rows)
        for node_id, row in enumerate(rows):
            leaf = len(row) == 1
            for name, value in zip(names, (tree_id, node_id, 0 if leaf else row[0],
                                           0.0 if leaf else float(row[1]),
                                           "LEAF" if leaf else "BRANCH_LT",
                                           0 if leaf else row[2], 0 if leaf else row[3]),
                                   strict=True):
                nodes[name].append(value)
            if leaf:
                for name, value in zip(("treeids", "nodeids", "ids", "weights"),
                                       (tree_id, node_id, 0, float(row[0])), strict=True):
                    targets[name].append(value)
    return {**{f"nodes_{name}": values for name, values in nodes.items()},
            **{f"target_{name}": values for name, values in targets.items()}}


def _kind_search(by_kind: dict[int, Any], low: int, high: int, kind_column: int,
                 rows: list[tuple]) -> int:
    """Append the nodes sending kinds ``low..high - 1`` to their members (an xgboost tree, a
    leaf value, or a 0 leaf for a kind without one) to ``rows``; the first node's id."""
    node = len(rows)
    if not any(k in by_kind for k in range(low, high)):
        rows.append((0.0,))
    elif high - low == 1:
        member = by_kind[low]
        rows.extend([(member,)] if isinstance(member, float) else _xgboost_nodes(member, node))
    else:
        rows.append(())
        middle = (low + high) // 2
        left = _kind_search(by_kind, low, middle, kind_column, rows)
        right = _kind_search(by_kind, middle, high, kind_column, rows)
        # Kinds are integers: kind < middle - 0.5 is kind in low..middle - 1.
        rows[node] = (kind_column, middle - 0.5, left, right)
    return node


def _xgboost_nodes(tree: dict[str, Any], first: int) -> list[tuple]:
    """An xgboost tree's nodes as :func:`_ensemble_attributes` rows, numbered from ``first``."""
    rows: list[tuple] = []
    for feature, split, left, right in zip(tree["split_indices"], tree["split_conditions"],
                                           tree["left_children"], tree["right_children"],
                                           strict=True):
        rows.append((float(split),) if left == -1 else
                    (feature, float(split), first + left, first + right))
    return rows


class NumpyTrees:
    """Every kind's trees in numpy arrays, evaluated for all rows of all kinds in one pass.

    Every tree is a complete binary tree of the deepest tree's depth (a leaf above the bottom
    becomes nodes that always go left, down to a copy of it), the kinds' trees one after the
    other, and each (row, tree of the row's kind) pair descends one level per step.
    """

    def __init__(self, parsed: list[tuple[list[dict[str, Any]], float]], features: int) -> None:
        import numpy as np

        self.features = features
        trees = [tree for kind_trees, _ in parsed for tree in kind_trees]
        self.depth = max([_tree_depth(tree) for tree in trees] + [0])
        inner = 2**self.depth - 1
        self.count = np.asarray([len(kind_trees) for kind_trees, _ in parsed], dtype=np.intp)
        self.first = np.cumsum(self.count) - self.count
        self.base_score = np.asarray([score for _, score in parsed], dtype=np.float32)
        feature = np.zeros((len(trees), max(inner, 1)), dtype=np.intp)
        threshold = np.full((len(trees), max(inner, 1)), np.inf, dtype=np.float32)
        leaf = np.zeros((len(trees), inner + 1), dtype=np.float32)
        for j, tree in enumerate(trees):
            _pad_tree(tree, 0, 0, self.depth, feature[j], threshold[j], leaf[j])
        # One heap of 2 * inner + 1 slots per tree, all trees in one array: a slot's left
        # child's global index is stored (the right child is the next slot), so a level of the
        # walk is one step ``node = left[node] + (x[feature[node]] >= threshold[node])``;
        # leaf slots hold the leaf values.
        slots = 2 * inner + 1
        heap = np.arange(len(trees), dtype=np.intp)[:, None] * slots
        self.slots = slots
        self.feature = np.zeros((len(trees), slots), dtype=np.intp)
        self.threshold = np.full((len(trees), slots), np.inf, dtype=np.float32)
        self.left = np.zeros((len(trees), slots), dtype=np.intp)
        self.value = np.zeros((len(trees), slots), dtype=np.float32)
        self.feature[:, :inner] = feature[:, :inner]
        self.threshold[:, :inner] = threshold[:, :inner]
        self.left[:, :inner] = heap + 2 * np.arange(inner) + 1
        self.value[:, inner:] = leaf
        self.feature, self.threshold, self.left, self.value = (
            a.reshape(-1) for a in (self.feature, self.threshold, self.left, self.value))

    def margin(self, x: Any) -> Any:
        """Each row's tree sum plus its kind's base score (float64, n)."""
        import numpy as np

        kinds = x[:, -1].astype(np.intp)
        counts = self.count[kinds]
        row = np.repeat(np.arange(len(x)), counts)
        # Tree ids: each row's kind's first tree, then one more per pair of that row.
        starts = np.cumsum(counts) - counts
        tree = np.repeat(self.first[kinds] - starts, counts) + np.arange(len(row))
        node = tree * self.slots
        x_at = row * x.shape[1]
        flat = x.astype(np.float32).reshape(-1)
        feature, threshold, left = self.feature, self.threshold, self.left
        for _ in range(self.depth):
            node = left[node] + (flat[x_at + feature[node]] >= threshold[node])
        return np.bincount(row, weights=self.value[node], minlength=len(x)) + self.base_score[kinds]


def _tree_depth(tree: dict[str, Any], node: int = 0) -> int:
    left = tree["left_children"][node]
    if left == -1:
        return 0
    return 1 + max(_tree_depth(tree, left), _tree_depth(tree, tree["right_children"][node]))


def _pad_tree(tree: dict[str, Any], node: int, position: int, levels_left: int, feature: Any,
              threshold: Any, leaf: Any) -> None:
    """Write xgboost tree node ``node`` at heap ``position`` (children at 2p+1, 2p+2)."""
    left = tree["left_children"][node]
    if left == -1:
        # A leaf above the bottom: threshold +inf sends every row left, down to its copy.
        for _ in range(levels_left):
            position = 2 * position + 1
        leaf[position - (len(leaf) - 1)] = tree["split_conditions"][node]
        return
    feature[position] = tree["split_indices"][node]
    threshold[position] = tree["split_conditions"][node]
    _pad_tree(tree, left, 2 * position + 1, levels_left - 1, feature, threshold, leaf)
    _pad_tree(tree, tree["right_children"][node], 2 * position + 2, levels_left - 1, feature,
              threshold, leaf)
