"""The training-runs API: start, list, follow, cancel and delete training runs."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.decorators import api_view
from rest_framework.response import Response

from projects.access import get_project_for_user
from training.models import TrainingRun
from training.runs import (
    NotReadyToTrain,
    cancel_training,
    delete_training_run,
    mark_stale_runs_failed,
    start_training,
)
from training.serializers_runs import (
    StartTrainingSerializer,
    TrainingRunDetailSerializer,
    TrainingRunSerializer,
)


def _get_run_for_user(user, project_id, run_id) -> TrainingRun:
    project = get_project_for_user(user, project_id)
    run = get_object_or_404(
        TrainingRun.objects.select_related("dataset_version", "incremental_from"),
        pk=run_id,
        project=project,
    )
    if mark_stale_runs_failed(TrainingRun.objects.filter(pk=run.pk)):
        run.refresh_from_db()
    return run


def _refusal(error: ValidationError) -> Response:
    if isinstance(error, NotReadyToTrain):
        return Response(
            {
                "detail": "The project is not ready to train: "
                + "; ".join(error.missing)
                + ".",
                "missing": error.missing,
            },
            status=status.HTTP_400_BAD_REQUEST,
        )
    if hasattr(error, "error_dict"):
        return Response(error.message_dict, status=status.HTTP_400_BAD_REQUEST)
    return Response({"detail": " ".join(error.messages)}, status=400)


@extend_schema(
    methods=["GET"],
    responses=TrainingRunSerializer(many=True),
    summary="List a project's training runs",
)
@extend_schema(
    methods=["POST"],
    request=StartTrainingSerializer,
    responses={
        201: TrainingRunSerializer,
        400: OpenApiResponse(description="Not ready to train, or a bad field"),
    },
    summary="Start a training run",
)
@api_view(["GET", "POST"])
def run_list(request, project_id):
    project = get_project_for_user(request.user, project_id)
    runs = project.training_runs.select_related("dataset_version", "incremental_from")

    if request.method == "GET":
        mark_stale_runs_failed(runs)
        return Response(TrainingRunSerializer(runs, many=True).data)

    serializer = StartTrainingSerializer(data=request.data, project=project)
    serializer.is_valid(raise_exception=True)
    try:
        run = start_training(project, user=request.user, **serializer.validated_data)
    except ValidationError as exc:
        return _refusal(exc)
    run.refresh_from_db()
    return Response(TrainingRunSerializer(run).data, status=status.HTTP_201_CREATED)


@extend_schema(
    methods=["GET"], responses=TrainingRunDetailSerializer, summary="A training run"
)
@extend_schema(
    methods=["DELETE"],
    responses={
        204: None,
        409: OpenApiResponse(
            description="Still queued or training, or another version is "
            "training incrementally from it"
        ),
    },
    summary="Delete a training version with its service and model file",
)
@api_view(["GET", "DELETE"])
def run_detail(request, project_id, run_id):
    run = _get_run_for_user(request.user, project_id, run_id)
    if request.method == "GET":
        return Response(TrainingRunDetailSerializer(run).data)

    try:
        delete_training_run(run)
    except ValidationError as exc:
        return Response(
            {"detail": " ".join(exc.messages)}, status=status.HTTP_409_CONFLICT
        )
    return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(
    request=None, responses=TrainingRunSerializer, summary="Cancel a training run"
)
@api_view(["POST"])
def run_cancel(request, project_id, run_id):
    run = _get_run_for_user(request.user, project_id, run_id)
    if not run.is_active:
        return Response(
            {"detail": f"Training version {run.version} has already ended."},
            status=status.HTTP_409_CONFLICT,
        )
    run = cancel_training(run)
    return Response(TrainingRunSerializer(run).data)
