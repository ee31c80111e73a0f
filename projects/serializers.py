from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from projects.importing import ACCEPTED, DUPLICATE, REJECTED
from projects.labels import LABEL_NAME_MAX_LENGTH, clean_label_name
from projects.models import Image, Project, name_key


class ProjectSerializer(serializers.ModelSerializer):
    image_count = serializers.IntegerField(read_only=True)
    label_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Project
        fields = [
            "id",
            "name",
            "description",
            "task_type",
            "created_at",
            "updated_at",
            "image_count",
            "label_count",
        ]
        read_only_fields = ["task_type", "created_at", "updated_at"]

    def validate_name(self, value: str) -> str:
        name = value.strip()
        if not name:
            raise serializers.ValidationError("Give the project a name.")

        owner = self.context["request"].user
        clash = Project.objects.filter(owner=owner, name_key=name_key(name))
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise serializers.ValidationError(
                "You already have a project with this name."
            )
        return name


class ImageSerializer(serializers.ModelSerializer):
    label_name = serializers.CharField(
        source="label.name", read_only=True, allow_null=True, default=None
    )
    file_url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()

    class Meta:
        model = Image
        fields = [
            "id",
            "original_name",
            "label",
            "label_name",
            "width",
            "height",
            "format",
            "size_bytes",
            "sha256",
            "created_at",
            "labeled_at",
            "file_url",
            "thumbnail_url",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_file_url(self, image: Image) -> str:
        return self._url("api-image-file", image)

    @extend_schema_field(OpenApiTypes.URI)
    def get_thumbnail_url(self, image: Image) -> str:
        return self._url("api-image-thumbnail", image)

    def _url(self, name: str, image: Image) -> str:
        url = reverse(name, args=[image.project_id, image.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request else url


class ImageUploadSerializer(serializers.Serializer):
    files = serializers.ListField(
        child=serializers.FileField(allow_empty_file=True, use_url=False),
        allow_empty=False,
        help_text="The image files; send the field once per file.",
    )
    # Longer names reach validate_label, which explains the limit.
    label = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=LABEL_NAME_MAX_LENGTH + 40,
        help_text="A label for every image of this upload; created if missing.",
    )

    def validate_label(self, value: str) -> str:
        if not value:
            return value
        try:
            return clean_label_name(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages)

    def validate_files(self, files):
        if len(files) > settings.UPLOAD_MAX_FILES:
            raise serializers.ValidationError(
                f"At most {settings.UPLOAD_MAX_FILES} files can be sent at once."
            )
        return files


class ZipUploadSerializer(serializers.Serializer):
    archive = serializers.FileField(
        allow_empty_file=True, use_url=False, help_text="A .zip archive of images."
    )
    labels_from_folders = serializers.BooleanField(
        default=False,
        help_text="Label each image with the folder it is in (train, val and test "
        "folders are not labels).",
    )


class FileResultSerializer(serializers.Serializer):
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=[ACCEPTED, DUPLICATE, REJECTED])
    message = serializers.CharField(allow_blank=True)
    image_id = serializers.IntegerField(allow_null=True)
    duplicate_of_id = serializers.IntegerField(allow_null=True)
    label = serializers.CharField(allow_null=True)


class ImportReportSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    rejected = serializers.IntegerField()
    ignored = serializers.IntegerField(help_text="Hidden or system files skipped.")
    notes = serializers.ListField(
        child=serializers.CharField(),
        help_text="Lines about the upload as a whole, such as skipped files.",
    )
    results = FileResultSerializer(many=True)
