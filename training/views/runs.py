"""The train page and a training run's live page."""

from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from projects.access import get_project_for_user
from training.forms import TrainForm
from training.models import TrainingRun
from training.runs import (
    cancel_training,
    delete_training_run,
    deletion_refusal,
    describe_seconds,
    mark_stale_runs_failed,
    remaining_seconds,
    start_training,
    waiting_too_long,
)

logger = logging.getLogger(__name__)

RECENT_RUNS = 10


def _get_run_for_user(user, project_id, run_id) -> TrainingRun:
    project = get_project_for_user(user, project_id)
    return get_object_or_404(
        TrainingRun.objects.select_related(
            "project", "dataset_version", "incremental_from"
        ),
        pk=run_id,
        project=project,
    )


def _add_errors(form: TrainForm, error: ValidationError) -> None:
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return

    for field, errors in error.error_dict.items():
        form.add_error(field if field in form.fields else None, errors)


@login_required
def train(request, project_id):
    project = get_project_for_user(request.user, project_id)
    mark_stale_runs_failed(project.training_runs.all())

    form = TrainForm(request.POST or None, project=project)
    if request.method == "POST" and form.is_valid():
        try:
            run = start_training(project, user=request.user, **form.start_kwargs())
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            # "follow": a run that ends before its page has even loaded still
            # takes the user on to its metrics.
            return redirect(f"{run.get_absolute_url()}?follow=1")

    ctx = {
        "project": project,
        "section": "train",
        "form": form,
        "readiness": project.readiness(),
        "recent_runs": project.training_runs.select_related("dataset_version")[
            :RECENT_RUNS
        ],
    }
    return render(request, "training/train_form.html", ctx)


def _status_ctx(run: TrainingRun) -> dict:
    return {
        "project": run.project,
        "run": run,
        "elapsed": describe_seconds(run.duration_seconds),
        "remaining": describe_seconds(remaining_seconds(run)),
        "progress_percent": round(run.progress * 100),
        "waiting_too_long": waiting_too_long(run),
    }


# Never served from the browser's cache: going back to a finished run must show
# it finished, not the page as it was while it still polled.
@never_cache
@login_required
def run_detail(request, project_id, run_id):
    run = _get_run_for_user(request.user, project_id, run_id)
    if mark_stale_runs_failed(TrainingRun.objects.filter(pk=run.pk)):
        run.refresh_from_db()

    ctx = {
        **_status_ctx(run),
        "section": "train",
        "go_to_metrics": run.is_usable and request.GET.get("follow") == "1",
    }
    return render(request, "training/run_detail.html", ctx)


@login_required
def run_status(request, project_id, run_id):
    """The live part of the run page, polled by htmx while the run is active."""
    run = _get_run_for_user(request.user, project_id, run_id)
    if mark_stale_runs_failed(TrainingRun.objects.filter(pk=run.pk)):
        run.refresh_from_db()

    # The poll that sees the run finish takes the watcher on to the metrics.
    ctx = {**_status_ctx(run), "go_to_metrics": run.is_usable}
    return render(request, "training/_run_status.html", ctx)


@login_required
@require_POST
def run_cancel(request, project_id, run_id):
    run = _get_run_for_user(request.user, project_id, run_id)
    if run.is_active:
        run = cancel_training(run)
    if request.htmx:
        return render(request, "training/_run_status.html", _status_ctx(run))
    return redirect(run)


@login_required
def run_delete(request, project_id, run_id):
    run = _get_run_for_user(request.user, project_id, run_id)
    if mark_stale_runs_failed(TrainingRun.objects.filter(pk=run.pk)):
        run.refresh_from_db()

    ctx = {
        "project": run.project,
        "section": "dashboard",
        "run": run,
        "service": getattr(run, "service", None),
        "followers": TrainingRun.objects.filter(incremental_from=run),
        "refusal": deletion_refusal(run),
    }
    if request.method != "POST":
        return render(request, "training/run_confirm_delete.html", ctx)

    try:
        delete_training_run(run)
    except ValidationError as exc:
        ctx["refusal"] = " ".join(exc.messages)
        return render(request, "training/run_confirm_delete.html", ctx, status=409)
    messages.success(request, f"Training version {run.version} deleted.")
    return redirect("training:dashboard", run.project_id)
