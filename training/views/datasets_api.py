"""The dataset versions API: list, publish, retrieve, delete, manifests, exports."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import api_view, parser_classes
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from projects.access import get_project_for_user
from training import manifest
from training.datasets import delete_dataset_version, publish_dataset_version
from training.models import DatasetVersion
from training.serializers_datasets import (
    DatasetVersionItemSerializer,
    DatasetVersionSerializer,
    ImportManifestSerializer,
    PublishDatasetVersionSerializer,
    PublishedDatasetVersionSerializer,
)
from training.views.datasets import (
    class_folders_response,
    manifest_response,
    modelarts_zip_response,
)


class _FileNegotiation(BaseContentNegotiation):
    """Downloads answer with their own type, whatever the Accept header asks."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


def _file_download(view):
    view.content_negotiation_class = _FileNegotiation
    return view


def _get_version(request, project_id, version_id) -> DatasetVersion:
    project = get_project_for_user(request.user, project_id)
    return get_object_or_404(DatasetVersion, pk=version_id, project=project)


def _drf_error(exc: ValidationError) -> serializers.ValidationError:
    if hasattr(exc, "error_dict"):
        return serializers.ValidationError(exc.message_dict)
    return serializers.ValidationError({"non_field_errors": exc.messages})


@extend_schema(
    methods=["GET"],
    responses=DatasetVersionSerializer(many=True),
    summary="List a project's dataset versions",
)
@extend_schema(
    methods=["POST"],
    request=PublishDatasetVersionSerializer,
    responses={201: PublishedDatasetVersionSerializer},
    summary="Publish a dataset version from the labeled images",
)
@api_view(["GET", "POST"])
def dataset_version_list(request, project_id):
    project = get_project_for_user(request.user, project_id)
    if request.method == "GET":
        versions = project.dataset_versions.select_related("created_by")
        return Response(DatasetVersionSerializer(versions, many=True).data)

    serializer = PublishDatasetVersionSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    data = serializer.validated_data
    try:
        version = publish_dataset_version(
            project,
            name=data.get("name") or None,
            train_ratio=data["train_ratio"],
            seed=data.get("seed"),
            user=request.user,
        )
    except ValidationError as exc:
        raise _drf_error(exc)
    return Response(
        PublishedDatasetVersionSerializer(version).data,
        status=status.HTTP_201_CREATED,
    )


@extend_schema(
    methods=["GET"], responses=DatasetVersionSerializer, summary="A dataset version"
)
@extend_schema(
    methods=["DELETE"],
    responses={204: None, 409: OpenApiResponse(description="Used by a training run")},
    summary="Delete a dataset version no training version uses",
)
@api_view(["GET", "DELETE"])
def dataset_version_detail(request, project_id, version_id):
    version = _get_version(request, project_id, version_id)
    if request.method == "GET":
        return Response(DatasetVersionSerializer(version).data)

    try:
        delete_dataset_version(version)
    except ValidationError as exc:
        return Response(
            {"detail": " ".join(exc.messages)}, status=status.HTTP_409_CONFLICT
        )
    return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(
    responses=DatasetVersionItemSerializer(many=True),
    summary="The images of a dataset version, with their label and usage",
)
@api_view(["GET"])
def dataset_version_items(request, project_id, version_id):
    version = _get_version(request, project_id, version_id)
    items = version.items.order_by("id")
    usage = request.query_params.get("usage")
    if usage:
        items = items.filter(usage=usage.upper())

    paginator = PageNumberPagination()
    page = paginator.paginate_queryset(items, request)
    context = {"project": version.project}
    data = DatasetVersionItemSerializer(page, many=True, context=context).data
    return paginator.get_paginated_response(data)


@extend_schema(
    responses={(200, manifest.CONTENT_TYPE): OpenApiTypes.STR},
    summary="The version's ModelArts manifest (JSON Lines)",
)
@api_view(["GET"])
@_file_download
def dataset_version_manifest(request, project_id, version_id):
    return manifest_response(_get_version(request, project_id, version_id))


@extend_schema(
    responses={
        (200, "application/zip"): OpenApiTypes.BINARY,
        409: OpenApiResponse(description="Two labels would share one folder"),
    },
    summary="The version as a zip of train/<label>/ and val/<label>/ folders",
)
@api_view(["GET"])
@_file_download
def dataset_version_export_folders(request, project_id, version_id):
    version = _get_version(request, project_id, version_id)
    try:
        return class_folders_response(version)
    except ValidationError as exc:
        return Response(
            {"detail": " ".join(exc.messages)}, status=status.HTTP_409_CONFLICT
        )


@extend_schema(
    responses={(200, "application/zip"): OpenApiTypes.BINARY},
    summary="The version as a ModelArts zip: the manifest and images/",
)
@api_view(["GET"])
@_file_download
def dataset_version_export_modelarts(request, project_id, version_id):
    return modelarts_zip_response(_get_version(request, project_id, version_id))


@extend_schema(
    request={"multipart/form-data": ImportManifestSerializer},
    responses={
        201: OpenApiResponse(description="Imported; the report names the version"),
        400: OpenApiResponse(description="Per-line report; no version created"),
    },
    summary="Import a zip with a ModelArts manifest as a new dataset version",
)
@api_view(["POST"])
@parser_classes([MultiPartParser, FormParser])
def dataset_version_import(request, project_id):
    project = get_project_for_user(request.user, project_id)
    serializer = ImportManifestSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    upload = serializer.validated_data["file"]
    if upload.size > settings.ZIP_MAX_BYTES:
        limit = settings.ZIP_MAX_BYTES / 1024**2
        raise serializers.ValidationError(
            {"file": [f"The zip is larger than {limit:.0f} MB."]}
        )

    try:
        report = manifest.import_manifest_zip(
            project,
            upload,
            name=serializer.validated_data.get("name") or None,
            user=request.user,
        )
    except ValidationError as exc:
        raise _drf_error(exc)
    code = status.HTTP_201_CREATED if report.version else status.HTTP_400_BAD_REQUEST
    return Response(report.as_dict(), status=code)
