"""REST API for labels, bulk label assignment and readiness to train.

Every endpoint looks the project up through get_project_for_user, so another
user's project (and each label in it) answers 404.
"""

from __future__ import annotations

from dataclasses import asdict

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Count, Q
from django.http import QueryDict
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.response import Response

from labeling import actions
from labeling.serializers import (
    AssignSerializer,
    DeleteLabelSerializer,
    LabelSerializer,
    MergeLabelSerializer,
    ReadinessSerializer,
)
from projects.access import get_project_for_user
from projects.models import Project


def _with_counts(labels):
    # Aggregating drops the model's default ordering; keep it for paging.
    return labels.annotate(
        image_count=Count("images", filter=Q(images__trashed_at__isnull=True))
    ).order_by("name", "pk")


class ProjectMixin:
    """The project named in the URL, if it belongs to the caller."""

    def get_project(self) -> Project:
        if not hasattr(self, "_project"):
            self._project = get_project_for_user(
                self.request.user, self.kwargs["project_id"]
            )
        return self._project

    def get_serializer_context(self) -> dict:
        return {**super().get_serializer_context(), "project": self.get_project()}

    def label_summary(self) -> dict:
        project = self.get_project()
        return {
            "label_counts": project.label_counts(),
            "readiness": asdict(project.readiness()),
        }


class LabelList(ProjectMixin, generics.ListCreateAPIView):
    """The project's labels with their image counts; POST creates one."""

    serializer_class = LabelSerializer

    def get_queryset(self):
        return _with_counts(self.get_project().labels.all())


class LabelDetail(ProjectMixin, generics.RetrieveUpdateDestroyAPIView):
    """One label: rename or recolour it with PATCH, delete it with DELETE."""

    serializer_class = LabelSerializer
    lookup_url_kwarg = "label_id"

    def get_queryset(self):
        return _with_counts(self.get_project().labels.all())

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "mode",
                enum=actions.DeleteMode.values,
                default=actions.DeleteMode.LABEL_ONLY,
                description="label_only: its images become unlabeled. "
                "label_and_images: its images go to the trash, files kept. "
                "label_images_and_files: its images and their files are deleted.",
            )
        ],
        responses=inline_serializer(
            "LabelDeleted",
            {
                "deleted": serializers.CharField(),
                "mode": serializers.CharField(),
                "images": serializers.IntegerField(),
            },
        ),
    )
    def delete(self, request, *args, **kwargs):
        label = self.get_object()
        # The mode may come in the body or, for clients that send no body
        # with DELETE, in the query string. A body that says anything else is
        # refused rather than read as "use the default mode".
        body = request.data
        if isinstance(body, QueryDict):
            body = body.dict()
        query_mode = request.query_params.get("mode")
        if isinstance(body, dict) and query_mode is not None:
            body = {"mode": query_mode, **body}
            if body["mode"] != query_mode:
                raise serializers.ValidationError(
                    {"mode": ["The body and the query string ask for different modes."]}
                )
        params = DeleteLabelSerializer(data=body)
        params.is_valid(raise_exception=True)

        mode = params.validated_data["mode"]
        touched = actions.delete_label(label, mode, user=request.user)
        summary = {"deleted": label.name, "mode": mode, "images": touched}
        return Response({**summary, **self.label_summary()})


class LabelMerge(ProjectMixin, generics.GenericAPIView):
    """Move every image of this label to `into`, then delete this label."""

    serializer_class = MergeLabelSerializer
    lookup_url_kwarg = "label_id"

    def get_queryset(self):
        return self.get_project().labels.all()

    @extend_schema(
        responses=inline_serializer(
            "LabelMerged",
            {"moved": serializers.IntegerField(), "into": LabelSerializer()},
        )
    )
    def post(self, request, *args, **kwargs):
        label = self.get_object()
        params = self.get_serializer(data=request.data)
        params.is_valid(raise_exception=True)

        target = params.validated_data["into"]
        try:
            moved = actions.merge_labels(label, target, user=request.user)
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"into": exc.messages})

        target = (
            self.get_queryset()
            .annotate(
                image_count=Count("images", filter=Q(images__trashed_at__isnull=True))
            )
            .get(pk=target.pk)
        )
        into = LabelSerializer(target, context=self.get_serializer_context()).data
        return Response({"moved": moved, "into": into, **self.label_summary()})


class LabelAssign(ProjectMixin, generics.GenericAPIView):
    """Give many images one label (or none) in one request.

    Images from another project, or in the trash, are refused with 400 and
    their ids; nothing is changed then.
    """

    serializer_class = AssignSerializer

    @extend_schema(
        responses=inline_serializer(
            "LabelsAssigned",
            {
                "updated": serializers.IntegerField(),
                "label": serializers.IntegerField(allow_null=True),
                "label_counts": serializers.DictField(child=serializers.IntegerField()),
                "readiness": ReadinessSerializer(),
            },
        )
    )
    def post(self, request, *args, **kwargs):
        project = self.get_project()
        params = self.get_serializer(data=request.data)
        params.is_valid(raise_exception=True)

        label = params.validated_data["label"]
        if "image_ids" in params.validated_data:
            updated = actions.assign_label_to_ids(
                project, params.validated_data["image_ids"], label, user=request.user
            )
        else:
            images = params.validated_data["filter"].images()
            updated = actions.assign_label_to_queryset(
                project, images, label, user=request.user
            )

        return Response(
            {
                "updated": updated,
                "label": label.pk if label else None,
                **self.label_summary(),
            },
            status=status.HTTP_200_OK,
        )


class ProjectReadiness(ProjectMixin, generics.GenericAPIView):
    """Can the project be trained, and if not, what is missing?"""

    serializer_class = ReadinessSerializer

    def get(self, request, *args, **kwargs):
        return Response(asdict(self.get_project().readiness()))
