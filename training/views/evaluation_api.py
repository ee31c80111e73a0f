"""API for training versions: the dashboard list and each version's metrics."""

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.response import Response

from projects.access import get_project_for_user
from projects.ids import parse_id
from training.serializers_evaluation import (
    TrainingVersionMetricsSerializer,
    TrainingVersionSerializer,
    metrics_payload,
)


class TrainingVersionList(generics.ListAPIView):
    """Every training version of a project with its macro metrics, newest first."""

    serializer_class = TrainingVersionSerializer

    def get_queryset(self):
        project = get_project_for_user(self.request.user, self.kwargs["project_id"])
        return project.training_runs.select_related(
            "dataset_version", "incremental_from", "service"
        )


class TrainingVersionMetrics(generics.GenericAPIView):
    """One training version's evaluation, by version name ("V002") or by id."""

    serializer_class = TrainingVersionMetricsSerializer

    def get_object(self):
        project = get_project_for_user(self.request.user, self.kwargs["project_id"])
        key = self.kwargs["version"]
        run = project.training_runs.filter(version=key).first()
        if run is None and (run_id := parse_id(key)):
            run = project.training_runs.filter(pk=run_id).first()
        if run is None:
            raise Http404("No such training version.")
        return run

    @extend_schema(responses=TrainingVersionMetricsSerializer)
    def get(self, request, project_id, version):
        run = self.get_object()
        return Response(self.get_serializer(metrics_payload(run)).data)
