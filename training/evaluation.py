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

from dataclasses import dataclass


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


# The figures a training version is compared on, as (key, heading).
METRIC_COLUMNS = (
    ("accuracy", "Accuracy"),
    ("precision", "Precision"),
    ("recall", "Recall"),
    ("f1", "F1"),
)


def sorted_mistakes(metrics: dict) -> list[dict]:
    """The misclassified validation images, most confident mistakes first."""
    mistakes = metrics.get("misclassified") or []
    return sorted(mistakes, key=lambda m: m.get("confidence") or 0.0, reverse=True)


def weakest_label(metrics: dict) -> str | None:
    """The label with the lowest F1 (then the lowest recall), if any has images."""
    per_label = {
        name: figures
        for name, figures in (metrics.get("per_label") or {}).items()
        if figures.get("support")
    }
    if not per_label:
        return None
    return min(
        per_label, key=lambda name: (per_label[name]["f1"], per_label[name]["recall"])
    )


def best_values(rows: list, keys: list[str]) -> dict[str, float | None]:
    """The highest value of each key over the rows that have one."""
    best = {}
    for key in keys:
        values = [getattr(row, key) for row in rows if getattr(row, key) is not None]
        best[key] = max(values) if values else None
    return best


@dataclass
class LabelComparison:
    """One label's F1 in two training versions; None where a version lacks it."""

    name: str
    first: float | None
    second: float | None

    @property
    def difference(self) -> float | None:
        if self.first is None or self.second is None:
            return None
        return self.second - self.first


def compare_label_f1(first: dict, second: dict) -> list[LabelComparison]:
    """Per-label F1 of two versions' metrics, labels of the first version first."""
    first_labels = first.get("per_label") or {}
    second_labels = second.get("per_label") or {}
    names = list(first_labels) + [n for n in second_labels if n not in first_labels]
    return [
        LabelComparison(
            name=name,
            first=first_labels[name]["f1"] if name in first_labels else None,
            second=second_labels[name]["f1"] if name in second_labels else None,
        )
        for name in names
    ]


def format_duration(seconds: float | None) -> str:
    """A duration the way a person reads it: "8.4 s", "3 min 05 s", "2 h 10 min"."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
