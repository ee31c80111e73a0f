from django.urls import reverse
from rest_framework import serializers

from training.datasets import SEED_LIMIT
from training.models import DEFAULT_TRAIN_RATIO, DatasetVersion, DatasetVersionItem


class DatasetVersionSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    manifest_url = serializers.SerializerMethodField()
    page_url = serializers.SerializerMethodField()

    class Meta:
        model = DatasetVersion
        fields = [
            "id",
            "project",
            "name",
            "train_ratio",
            "seed",
            "image_count",
            "label_names",
            "label_counts",
            "created_by",
            "created_at",
            "manifest_url",
            "page_url",
        ]
        read_only_fields = fields

    def get_manifest_url(self, version) -> str:
        return reverse(
            "api-dataset-version-manifest", args=[version.project_id, version.pk]
        )

    def get_page_url(self, version) -> str:
        return reverse("training:dataset_detail", args=[version.project_id, version.pk])


class PublishedDatasetVersionSerializer(DatasetVersionSerializer):
    """A version just published, with the labels it left out for lack of images."""

    left_out_labels = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text="Labels that have no images, so the version leaves them out.",
    )

    class Meta(DatasetVersionSerializer.Meta):
        fields = [*DatasetVersionSerializer.Meta.fields, "left_out_labels"]
        read_only_fields = fields


class DatasetVersionItemSerializer(serializers.ModelSerializer):
    thumbnail_url = serializers.SerializerMethodField()
    file_url = serializers.SerializerMethodField()

    class Meta:
        model = DatasetVersionItem
        fields = [
            "id",
            "image",
            "original_name",
            "sha256",
            "label_name",
            "usage",
            "thumbnail_url",
            "file_url",
        ]
        read_only_fields = fields

    def get_thumbnail_url(self, item) -> str:
        project_id = self.context["project"].pk
        return reverse("training:dataset_item_thumb", args=[project_id, item.pk])

    def get_file_url(self, item) -> str:
        project_id = self.context["project"].pk
        return reverse("training:dataset_item_file", args=[project_id, item.pk])


class RatioField(serializers.FloatField):
    """A number from 0 to 1; true and false are not numbers here, though
    DRF's FloatField would read them as 1.0 and 0.0."""

    default_error_messages = {
        "boolean": "The training ratio must be a number from 0 to 1, not {value}.",
    }

    def to_internal_value(self, data) -> float:
        if isinstance(data, bool):
            self.fail("boolean", value="true" if data else "false")
        return super().to_internal_value(data)


class PublishDatasetVersionSerializer(serializers.Serializer):
    name = serializers.CharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        trim_whitespace=True,
        help_text="Leave out for the proposed name (V001, V002, ...).",
    )
    train_ratio = RatioField(
        required=False,
        default=DEFAULT_TRAIN_RATIO,
        help_text="Share of each label's images used for training, from 0 to 1.",
    )
    seed = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=SEED_LIMIT - 1,
        help_text="Seed of the random split; leave out for a random one.",
    )


class ImportManifestSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A zip holding a manifest and its images.")
    name = serializers.CharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        help_text="Leave out for the proposed name.",
    )
