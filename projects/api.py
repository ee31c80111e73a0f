"""REST API for projects and their images.

Every query starts from the projects of the requesting user, so another
user's project, and everything in it, answers 404.
"""

import logging

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Count, Q
from django.http import FileResponse, Http404
from django.utils.functional import cached_property
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from projects import storage
from projects.access import get_project_for_user, projects_for_user
from projects.deletion import delete_images, delete_project
from projects.ids import parse_ids
from projects.imaging import CONTENT_TYPES
from projects.importing import Importer
from projects.models import Image, Project, name_key
from projects.serializers import (
    ImageSerializer,
    ImageUploadSerializer,
    ImportReportSerializer,
    ProjectSerializer,
    ZipUploadSerializer,
)

logger = logging.getLogger(__name__)

PROJECT_ID = OpenApiParameter(
    "project_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Project id."
)
IMAGE_ID = OpenApiParameter(
    "id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Image id."
)
IMAGE_FILTERS = [
    OpenApiParameter(
        "status",
        OpenApiTypes.STR,
        enum=["labeled", "unlabeled"],
        description="Only labeled or only unlabeled images.",
    ),
    OpenApiParameter(
        "label", OpenApiTypes.STR, description="A label's id or name (any case)."
    ),
    OpenApiParameter(
        "search", OpenApiTypes.STR, description="Part of the file name (any case)."
    ),
]
BINARY_FILE = OpenApiResponse(OpenApiTypes.BINARY, description="The file's bytes.")


class ProjectViewSet(viewsets.ModelViewSet):
    serializer_class = ProjectSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Project.objects.none()
        return (
            projects_for_user(self.request.user)
            .annotate(
                image_count=Count(
                    "images", filter=Q(images__trashed_at__isnull=True), distinct=True
                ),
                label_count=Count("labels", distinct=True),
            )
            .order_by("-created_at", "-id")
        )

    def perform_create(self, serializer):
        project = serializer.save(owner=self.request.user)
        project.image_count = 0
        project.label_count = 0

    def perform_destroy(self, instance):
        delete_project(instance)


@extend_schema_view(
    list=extend_schema(parameters=[PROJECT_ID, *IMAGE_FILTERS]),
    retrieve=extend_schema(parameters=[PROJECT_ID, IMAGE_ID]),
    destroy=extend_schema(parameters=[PROJECT_ID, IMAGE_ID]),
)
class ImageViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """The images of one project (deleted images are not listed)."""

    serializer_class = ImageSerializer

    @cached_property
    def project(self) -> Project:
        return get_project_for_user(self.request.user, self.kwargs["project_id"])

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Image.objects.none()
        images = self.project.images.alive().select_related("label")
        if self.action == "list":
            images = self._filter(images)
        return images

    def _filter(self, images):
        params = self.request.query_params
        status_filter = params.get("status", "")
        if status_filter == "labeled":
            images = images.labeled()
        elif status_filter == "unlabeled":
            images = images.unlabeled()
        elif status_filter:
            raise ValidationError({"status": "Use labeled or unlabeled."})

        label = params.get("label", "").strip()
        if label.isascii() and label.isdigit():
            try:
                label_id = parse_ids([label], noun="label")[0]
            except DjangoValidationError as exc:
                raise ValidationError({"label": exc.messages}) from None
            images = images.filter(label_id=label_id)
        elif label:
            images = images.filter(label__name_key=name_key(label))

        search = params.get("search", "").strip()
        if search:
            images = images.filter(original_name__icontains=search)
        return images

    def perform_destroy(self, instance):
        delete_images(Image.objects.filter(pk=instance.pk))

    @extend_schema(
        parameters=[PROJECT_ID],
        request={"multipart/form-data": ImageUploadSerializer},
        responses={200: ImportReportSerializer},
        description=(
            "Import images; the answer reports on every file. Each file part needs "
            'a file name: a part with filename="" is what a browser sends for an '
            "empty file input, and it is skipped without a line in the report."
        ),
    )
    @action(
        detail=False,
        methods=["post"],
        parser_classes=[MultiPartParser, FormParser],
        serializer_class=ImageUploadSerializer,
    )
    def upload(self, request, project_id=None):
        project = self.project
        upload = ImageUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)

        importer = Importer(project, user=request.user)
        importer.add_uploaded_files(
            upload.validated_data["files"],
            label_name=upload.validated_data.get("label") or None,
        )
        return self._report(importer)

    @extend_schema(
        parameters=[PROJECT_ID],
        request={"multipart/form-data": ZipUploadSerializer},
        responses={200: ImportReportSerializer},
        description="Import the images inside a zip archive.",
    )
    @action(
        detail=False,
        methods=["post"],
        url_path="upload-zip",
        parser_classes=[MultiPartParser, FormParser],
        serializer_class=ZipUploadSerializer,
    )
    def upload_zip(self, request, project_id=None):
        project = self.project
        upload = ZipUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)

        archive = upload.validated_data["archive"]
        importer = Importer(project, user=request.user)
        importer.add_zip(
            archive,
            labels_from_folders=upload.validated_data["labels_from_folders"],
            name=archive.name,
        )
        return self._report(importer)

    @extend_schema(parameters=[PROJECT_ID, IMAGE_ID], responses={200: BINARY_FILE})
    @action(detail=True, methods=["get"])
    def file(self, request, project_id=None, pk=None):
        image = self.get_object()
        content_type = CONTENT_TYPES.get(image.format, "application/octet-stream")
        return _file_response(image.file, content_type)

    @extend_schema(parameters=[PROJECT_ID, IMAGE_ID], responses={200: BINARY_FILE})
    @action(detail=True, methods=["get"])
    def thumbnail(self, request, project_id=None, pk=None):
        image = self.get_object()
        return _file_response(image.thumbnail, "image/jpeg")

    def _report(self, importer: Importer) -> Response:
        report = importer.report
        logger.info(
            "API import into project %s: %s accepted, %s duplicates, %s rejected",
            self.project.pk,
            report.accepted,
            report.duplicates,
            report.rejected,
        )
        return Response(report.to_dict(), status=status.HTTP_200_OK)


def _file_response(relative: str, content_type: str) -> FileResponse:
    try:
        handle = storage.media_path(relative).open("rb")
    except FileNotFoundError:
        raise Http404("The file of this image is missing.")
    return FileResponse(handle, content_type=content_type)
