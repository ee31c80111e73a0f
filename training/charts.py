"""Charts drawn on the server as inline SVG, so pages need no JavaScript library.

Every function returns markup that is safe to put in a template as it is: all
text that came from users (label names, version names) is escaped here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

# One colour per metric, the same on every chart.
METRIC_COLORS = {
    "accuracy": "#2b59c3",
    "precision": "#1e8e3e",
    "recall": "#b26a00",
    "f1": "#8e44ad",
    "loss": "#c0392b",
    "val_accuracy": "#2b59c3",
}

MARGIN_LEFT = 52
MARGIN_RIGHT = 16
MARGIN_TOP = 34
MARGIN_BOTTOM = 42
GRID_STEPS = 5
MAX_X_LABELS = 12


@dataclass
class Series:
    name: str
    values: list[float | None]
    color: str


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5 or 5 times a power of ten that is >= value."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        candidate = step * 10**exponent
        if candidate >= value * (1 - 1e-9):
            return float(candidate)
    return float(10 ** (exponent + 1))


def _number(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") or "0"


class _Canvas:
    """Coordinates of the plot area inside an SVG of the given size."""

    def __init__(self, width: int, height: int, y_max: float):
        self.width = width
        self.height = height
        self.y_max = y_max
        self.left = MARGIN_LEFT
        self.right = width - MARGIN_RIGHT
        self.top = MARGIN_TOP
        self.bottom = height - MARGIN_BOTTOM

    def y(self, value: float) -> float:
        share = min(max(value / self.y_max, 0.0), 1.0)
        return self.bottom - share * (self.bottom - self.top)

    def open(self, title: str, css_class: str) -> list[str]:
        label = escape(title)
        return [
            f'<svg class="chart {css_class}" viewBox="0 0 {self.width} {self.height}" '
            f'width="{self.width}" height="{self.height}" role="img" '
            f'aria-label="{label}" xmlns="http://www.w3.org/2000/svg">',
            f"<title>{label}</title>",
        ]

    def grid(self, y_title: str) -> list[str]:
        parts = []
        for step in range(GRID_STEPS + 1):
            value = self.y_max * step / GRID_STEPS
            y = self.y(value)
            parts.append(
                f'<line class="grid" x1="{self.left}" y1="{y:.1f}" '
                f'x2="{self.right}" y2="{y:.1f}" stroke="#dde1e8"/>'
            )
            parts.append(
                f'<text x="{self.left - 6}" y="{y + 4:.1f}" text-anchor="end" '
                f'font-size="11" fill="#6b7385">{_number(value)}</text>'
            )
        if y_title:
            middle = (self.top + self.bottom) / 2
            parts.append(
                f'<text x="12" y="{middle:.1f}" font-size="11" fill="#6b7385" '
                f'text-anchor="middle" transform="rotate(-90 12 {middle:.1f})">'
                f"{escape(y_title)}</text>"
            )
        return parts

    def x_axis(self, positions: list[float], labels: list[str], title: str):
        parts = [
            f'<line x1="{self.left}" y1="{self.bottom}" x2="{self.right}" '
            f'y2="{self.bottom}" stroke="#6b7385"/>'
        ]
        every = max(1, math.ceil(len(labels) / MAX_X_LABELS))
        for i, (x, text) in enumerate(zip(positions, labels, strict=True)):
            if i % every and i != len(labels) - 1:
                continue
            parts.append(
                f'<text x="{x:.1f}" y="{self.bottom + 15}" text-anchor="middle" '
                f'font-size="11" fill="#1d2330">{escape(text)}</text>'
            )
        if title:
            parts.append(
                f'<text x="{(self.left + self.right) / 2:.1f}" '
                f'y="{self.height - 6}" text-anchor="middle" font-size="11" '
                f'fill="#6b7385">{escape(title)}</text>'
            )
        return parts

    def legend(self, series: list[Series]) -> list[str]:
        parts = []
        x = self.left
        for s in series:
            parts.append(
                f'<rect x="{x}" y="10" width="12" height="12" fill="{s.color}"/>'
                f'<text x="{x + 16}" y="20" font-size="12" fill="#1d2330">'
                f"{escape(s.name)}</text>"
            )
            x += 26 + 7 * len(s.name)
        return parts


def line_chart(
    x_labels: list[str],
    series: list[Series],
    *,
    title: str,
    x_title: str = "",
    y_title: str = "",
    y_max: float | None = None,
    width: int = 520,
    height: int = 240,
) -> SafeString:
    """Lines through each series' points; a None value breaks its line."""
    if not x_labels:
        return mark_safe("")

    values = [v for s in series for v in s.values if v is not None]
    top = y_max if y_max is not None else nice_ceiling(max(values, default=1.0))
    canvas = _Canvas(width, height, top)
    span = canvas.right - canvas.left
    if len(x_labels) == 1:
        xs = [canvas.left + span / 2]
    else:
        xs = [
            canvas.left + span * i / (len(x_labels) - 1) for i in range(len(x_labels))
        ]

    parts = canvas.open(title, "line-chart")
    parts += canvas.grid(y_title)
    parts += canvas.x_axis(xs, x_labels, x_title)
    for s in series:
        segment: list[str] = []
        segments = [segment]
        for x, value in zip(xs, s.values, strict=False):
            if value is None:
                segment = []
                segments.append(segment)
                continue
            segment.append(f"{x:.1f},{canvas.y(value):.1f}")
        for points in segments:
            if len(points) > 1:
                parts.append(
                    f'<polyline fill="none" stroke="{s.color}" stroke-width="2" '
                    f'points="{" ".join(points)}"/>'
                )
        for x, label, value in zip(xs, x_labels, s.values, strict=False):
            if value is None:
                continue
            parts.append(
                f'<circle cx="{x:.1f}" cy="{canvas.y(value):.1f}" r="3" '
                f'fill="{s.color}"><title>{escape(s.name)}, {escape(x_title)} '
                f"{escape(label)}: {_number(value)}</title></circle>"
            )
    parts += canvas.legend(series)
    parts.append("</svg>")
    return mark_safe("".join(parts))


def bar_chart(
    categories: list[str],
    series: list[Series],
    *,
    title: str,
    x_title: str = "",
    y_title: str = "",
    y_max: float = 1.0,
    width: int = 640,
    height: int = 260,
) -> SafeString:
    """Grouped bars: one group per category, one bar per series in each group."""
    if not categories or not series:
        return mark_safe("")

    canvas = _Canvas(width, height, y_max)
    group_width = (canvas.right - canvas.left) / len(categories)
    bar_width = min(28.0, group_width * 0.8 / len(series))
    centers = [canvas.left + group_width * (i + 0.5) for i in range(len(categories))]

    parts = canvas.open(title, "bar-chart")
    parts += canvas.grid(y_title)
    for i, category in enumerate(categories):
        first_x = centers[i] - bar_width * len(series) / 2
        for j, s in enumerate(series):
            value = s.values[i]
            if value is None:
                continue
            y = canvas.y(value)
            parts.append(
                f'<rect x="{first_x + j * bar_width:.1f}" y="{y:.1f}" '
                f'width="{bar_width - 1:.1f}" height="{canvas.bottom - y:.1f}" '
                f'fill="{s.color}"><title>{escape(category)} '
                f"{escape(s.name)}: {_number(value)}</title></rect>"
            )
    parts += canvas.x_axis(centers, categories, x_title)
    parts += canvas.legend(series)
    parts.append("</svg>")
    return mark_safe("".join(parts))


def heat_style(count: int, max_count: int, *, correct: bool) -> str:
    """Inline CSS for a confusion-matrix cell: darker for more images.

    Correct predictions (the diagonal) are blue and mistakes red, so a glance
    shows both how many images a cell holds and whether they are right.
    """
    if not count or not max_count:
        return ""
    alpha = 0.12 + 0.88 * count / max_count
    rgb = "43, 89, 195" if correct else "192, 57, 43"
    text = "#fff" if alpha > 0.55 else "#1d2330"
    return f"background: rgba({rgb}, {alpha:.2f}); color: {text};"


def confusion_rows(metrics: dict) -> list[dict]:
    """The confusion matrix as table rows: true labels down, predictions across."""
    labels = metrics.get("labels") or []
    matrix = metrics.get("confusion_matrix") or []
    max_count = max((max(row, default=0) for row in matrix), default=0)
    rows = []
    for t, (name, counts) in enumerate(zip(labels, matrix, strict=False)):
        support = sum(counts)
        cells = []
        for p, count in enumerate(counts):
            share = f" ({count / support:.0%} of {name})" if support else ""
            noun = "image" if count == 1 else "images"
            cells.append(
                {
                    "count": count,
                    "correct": t == p,
                    "style": heat_style(count, max_count, correct=t == p),
                    "title": f"{count} {noun} of {name} predicted as "
                    f"{labels[p]}{share}",
                }
            )
        rows.append({"label": name, "cells": cells, "total": support})
    return rows


def predicted_totals(metrics: dict) -> list[int]:
    """How many validation images the model assigned to each label."""
    matrix = metrics.get("confusion_matrix") or []
    return [sum(column) for column in zip(*matrix, strict=True)] if matrix else []
