"""Classification metrics with their standard definitions, in plain Python.

For each label L, over the validation set:
  precision(L) = images correctly predicted as L / all images predicted as L
  recall(L)    = images correctly predicted as L / all images whose true label is L
  F1(L)        = harmonic mean of precision(L) and recall(L)
Precision is defined as 0 for a label the model never predicts (0 / 0), recall
as 0 for a label with no validation images, and F1 as 0 when both are 0. The
macro averages weigh every label the same, however many images it has.
"""

from __future__ import annotations


def confusion_matrix(n_labels: int, y_true: list[int], y_pred: list[int]) -> list:
    """matrix[t][p] counts images of true label t predicted as label p."""
    matrix = [[0] * n_labels for _ in range(n_labels)]
    for t, p in zip(y_true, y_pred, strict=True):
        matrix[t][p] += 1
    return matrix


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def compute_metrics(
    label_names: list[str], y_true: list[int], y_pred: list[int]
) -> dict:
    """Accuracy, per-label and macro precision, recall and F1, and the matrix."""
    n = len(label_names)
    matrix = confusion_matrix(n, y_true, y_pred)
    per_label = {}

    for i, name in enumerate(label_names):
        true_positive = matrix[i][i]
        predicted = sum(matrix[t][i] for t in range(n))
        support = sum(matrix[i])
        precision = _ratio(true_positive, predicted)
        recall = _ratio(true_positive, support)
        f1 = (
            _ratio(2 * precision * recall, precision + recall)
            if precision + recall
            else 0.0
        )
        per_label[name] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": support,
            "never_predicted": predicted == 0,
        }

    correct = sum(matrix[i][i] for i in range(n))
    return {
        "accuracy": _ratio(correct, len(y_true)),
        "precision": _ratio(sum(m["precision"] for m in per_label.values()), n),
        "recall": _ratio(sum(m["recall"] for m in per_label.values()), n),
        "f1": _ratio(sum(m["f1"] for m in per_label.values()), n),
        "per_label": per_label,
        "confusion_matrix": matrix,
        "labels": list(label_names),
        "count": len(y_true),
    }
