"""Evaluation pages: one training version's metrics, and all versions compared."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, render

from projects.access import get_project_for_user
from training.charts import (
    METRIC_COLORS,
    Series,
    bar_chart,
    confusion_rows,
    line_chart,
    predicted_totals,
)
from training.evaluation import (
    METRIC_COLUMNS,
    best_values,
    compare_label_f1,
    format_duration,
    sorted_mistakes,
    weakest_label,
)
from training.models import DatasetVersionItem, TrainingRun

# More thumbnails than this make the page slow to scan; the API has them all.
MISTAKES_SHOWN = 60
# Below this F1 the metrics page suggests labeling more images of the label.
WEAK_F1 = 0.9

TIMING_NAMES = {
    "decode_embed_s": "Decoding and embedding images",
    "fit_s": "Fitting the classifier",
    "total_s": "Total training time",
}


def _get_run_for_project(project, run_id) -> TrainingRun:
    runs = TrainingRun.objects.select_related(
        "dataset_version", "incremental_from", "service"
    )
    return get_object_or_404(runs, pk=run_id, project=project)


def _service_of(run: TrainingRun):
    # select_related already fetched it: a missing service costs no query.
    return getattr(run, "service", None)


def _per_label_rows(metrics: dict) -> list[dict]:
    per_label = metrics.get("per_label") or {}
    names = metrics.get("labels") or list(per_label)
    return [{"name": name, **per_label[name]} for name in names if name in per_label]


def _label_to_improve(metrics: dict) -> str | None:
    """The weakest label, when it is weak enough to be worth pointing out."""
    name = weakest_label(metrics)
    if name is None or len(metrics.get("per_label") or {}) < 2:
        return None
    return name if metrics["per_label"][name]["f1"] < WEAK_F1 else None


def _mistakes(run: TrainingRun, metrics: dict) -> list[dict]:
    """The most confident mistakes, each with its dataset item and live image."""
    mistakes = sorted_mistakes(metrics)[:MISTAKES_SHOWN]
    ids = [m["item_id"] for m in mistakes if m.get("item_id") is not None]
    items = DatasetVersionItem.objects.filter(
        dataset_version_id=run.dataset_version_id, pk__in=ids
    ).select_related("image__label")
    items_by_id = {item.pk: item for item in items}

    shown = []
    for mistake in mistakes:
        item = items_by_id.get(mistake.get("item_id"))
        image = item.image if item else None
        # A trashed image cannot be relabeled until it is restored.
        if image is not None and image.trashed_at is not None:
            image = None
        current_label = image.label.name if image and image.label else None
        shown.append(
            {
                **mistake,
                "item": item,
                "image": image,
                "relabeled": image is not None and current_label != mistake["true"],
                "current_label": current_label,
            }
        )
    return shown


def _timings(run: TrainingRun, metrics: dict) -> list[tuple[str, str]]:
    timings = metrics.get("timings") or {}
    rows = []
    for key, seconds in timings.items():
        if not isinstance(seconds, int | float):
            continue
        name = TIMING_NAMES.get(key, key.removesuffix("_s").replace("_", " "))
        rows.append((name.capitalize(), format_duration(seconds)))
    return rows


def _curves(history: list[dict]) -> dict:
    epochs = [str(h.get("epoch", i + 1)) for i, h in enumerate(history)]
    loss = [h.get("loss") for h in history]
    accuracy = [h.get("val_accuracy") for h in history]
    return {
        "loss": line_chart(
            epochs,
            [Series("Training loss", loss, METRIC_COLORS["loss"])],
            title="Training loss per epoch",
            x_title="Epoch",
            y_title="Loss",
        )
        if any(v is not None for v in loss)
        else "",
        "accuracy": line_chart(
            epochs,
            [Series("Validation accuracy", accuracy, METRIC_COLORS["val_accuracy"])],
            title="Validation accuracy per epoch",
            x_title="Epoch",
            y_title="Accuracy",
            y_max=1.0,
        )
        if any(v is not None for v in accuracy)
        else "",
    }


@login_required
def run_metrics(request, project_id, run_id):
    project = get_project_for_user(request.user, project_id)
    run = _get_run_for_project(project, run_id)
    metrics = run.metrics or {}
    per_label = _per_label_rows(metrics)
    labels = metrics.get("labels") or []

    ctx = {
        "project": project,
        "section": "dashboard",
        "run": run,
        "service": _service_of(run),
        "metrics": metrics,
        "has_metrics": bool(per_label),
        "per_label": per_label,
        "never_predicted": [r["name"] for r in per_label if r["never_predicted"]],
        "without_images": [r["name"] for r in per_label if not r["support"]],
        "weakest_label": _label_to_improve(metrics),
        "matrix_rows": confusion_rows(metrics),
        "matrix_labels": labels,
        "predicted_totals": predicted_totals(metrics),
        "mistakes": _mistakes(run, metrics),
        "mistake_count": len(metrics.get("misclassified") or []),
        "curves": _curves(run.history or []),
        "duration": format_duration(run.duration_seconds),
        "timings": _timings(run, metrics),
    }
    return render(request, "training/metrics.html", ctx)


# Columns the dashboard sorts on, with the direction a first click sorts in.
SORT_COLUMNS = {
    "version": "desc",
    "dataset": "asc",
    "preference": "asc",
    "accuracy": "desc",
    "precision": "desc",
    "recall": "desc",
    "f1": "desc",
    "duration": "asc",
    "status": "asc",
}


def _sort_key(column: str, run: TrainingRun):
    if column == "version":
        return (run.created_at, run.pk)
    if column == "dataset":
        return run.dataset_version.name.lower()
    if column == "preference":
        return run.get_preference_display()
    if column == "duration":
        return run.duration_seconds
    if column == "status":
        return run.get_status_display()
    return getattr(run, column)


def sort_runs(runs: list[TrainingRun], column: str, direction: str) -> list:
    """Runs sorted on a dashboard column; runs without a value always go last."""
    known = [r for r in runs if _sort_key(column, r) is not None]
    unknown = [r for r in runs if _sort_key(column, r) is None]
    known.sort(key=lambda r: _sort_key(column, r), reverse=direction == "desc")
    return known + unknown


@dataclass
class Header:
    key: str
    title: str
    url: str
    active: bool
    direction: str
    numeric: bool = False


def _headers(request, sort: str, direction: str) -> list[Header]:
    titles = [("version", "Version"), ("dataset", "Dataset version")]
    titles += [("preference", "Preference"), *METRIC_COLUMNS]
    titles += [("duration", "Duration"), ("status", "Status")]
    metric_keys = {key for key, _ in METRIC_COLUMNS}
    headers = []
    for key, title in titles:
        active = key == sort
        if active:
            next_direction = "asc" if direction == "desc" else "desc"
        else:
            next_direction = SORT_COLUMNS[key]
        query = request.GET.copy()
        query["sort"] = key
        query["dir"] = next_direction
        headers.append(
            Header(
                key=key,
                title=title,
                url=f"?{query.urlencode()}",
                active=active,
                direction=direction if active else "",
                numeric=key in metric_keys or key == "duration",
            )
        )
    return headers


def _pick(runs_by_id: dict, value: str | None):
    try:
        return runs_by_id.get(int(value)) if value else None
    except ValueError:
        return None


def _comparison(request, comparable: list[TrainingRun]) -> dict:
    """The two versions to compare: the user's choice, or the latest two."""
    runs_by_id = {run.pk: run for run in comparable}
    first = _pick(runs_by_id, request.GET.get("a"))
    second = _pick(runs_by_id, request.GET.get("b"))
    chosen = "a" in request.GET or "b" in request.GET
    if not chosen and len(comparable) >= 2:
        newest = sorted(comparable, key=lambda r: (r.created_at, r.pk))
        first, second = newest[-2], newest[-1]
    if first is None or second is None:
        return {"first": first, "second": second, "chosen": chosen, "rows": []}

    overall = []
    for key, title in METRIC_COLUMNS:
        a, b = getattr(first, key), getattr(second, key)
        difference = b - a if a is not None and b is not None else None
        overall.append({"title": title, "first": a, "second": b, "diff": difference})
    return {
        "first": first,
        "second": second,
        "chosen": chosen,
        "rows": compare_label_f1(first.metrics or {}, second.metrics or {}),
        "overall": overall,
    }


def _metrics_chart(runs: list[TrainingRun]):
    scored = sorted(
        (r for r in runs if r.accuracy is not None), key=lambda r: (r.created_at, r.pk)
    )
    return bar_chart(
        [r.version for r in scored],
        [
            Series(title, [getattr(r, key) for r in scored], METRIC_COLORS[key])
            for key, title in METRIC_COLUMNS
        ],
        title="Metrics of each training version",
        x_title="Training version",
        y_max=1.0,
    )


@login_required
def dashboard(request, project_id):
    project = get_project_for_user(request.user, project_id)
    runs = list(
        project.training_runs.select_related(
            "dataset_version", "incremental_from", "service"
        )
    )

    sort = request.GET.get("sort", "version")
    if sort not in SORT_COLUMNS:
        sort = "version"
    direction = request.GET.get("dir", SORT_COLUMNS[sort])
    if direction not in ("asc", "desc"):
        direction = SORT_COLUMNS[sort]
    runs = sort_runs(runs, sort, direction)
    metric_keys = [key for key, _ in METRIC_COLUMNS]
    best = best_values(runs, metric_keys)
    for run in runs:
        run.duration_display = format_duration(run.duration_seconds)
        run.service_or_none = _service_of(run)
        run.metric_cells = [
            {
                "key": key,
                "value": getattr(run, key),
                "best": best[key] is not None and getattr(run, key) == best[key],
            }
            for key in metric_keys
        ]

    comparable = [run for run in runs if (run.metrics or {}).get("per_label")]
    ctx = {
        "project": project,
        "section": "dashboard",
        "runs": runs,
        "headers": _headers(request, sort, direction),
        "best": best,
        "chart": _metrics_chart(runs),
        "comparable": sorted(comparable, key=lambda r: (r.created_at, r.pk)),
        "comparison": _comparison(request, comparable),
    }
    return render(request, "training/dashboard.html", ctx)
