from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.settings import api_settings

from labeling import actions
from labeling.forms import ImageFilterForm
from projects.models import Label, name_key


class LabelSerializer(serializers.ModelSerializer):
    image_count = serializers.SerializerMethodField()
    color = serializers.CharField(required=False, max_length=7)
    # Longer names reach validate_name, which explains the limit.
    name = serializers.CharField(max_length=200)

    class Meta:
        model = Label
        fields = ["id", "name", "color", "image_count", "created_at"]
        read_only_fields = ["id", "created_at"]

    def get_image_count(self, label: Label) -> int:
        count = getattr(label, "image_count", None)
        return count if count is not None else label.images.alive().count()

    def validate_name(self, value: str) -> str:
        return actions.unique_label_name(
            self.context["project"], value, label=self.instance
        )

    def validate_color(self, value: str) -> str:
        return actions.clean_label_color(value)

    def create(self, validated_data: dict) -> Label:
        return self._saving(
            lambda: actions.create_label(
                self.context["project"],
                validated_data["name"],
                validated_data.get("color"),
            )
        )

    def update(self, label: Label, validated_data: dict) -> Label:
        return self._saving(
            lambda: actions.update_label(
                label,
                name=validated_data.get("name"),
                color=validated_data.get("color"),
            )
        )

    @staticmethod
    def _saving(save):
        try:
            return save()
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"name": exc.messages})


@extend_schema_field(
    {
        "oneOf": [{"type": "integer"}, {"type": "string"}],
        "description": "A label id, or a label name (case does not matter).",
    }
)
class LabelReferenceField(serializers.Field):
    """A label of the project given by id (a number) or by name (a string)."""

    default_error_messages = {
        "invalid": "Give a label id (a number) or a label name (a string).",
        "unknown": "No label “{value}” in this project.",
    }

    def to_internal_value(self, data) -> Label:
        project = self.context["project"]
        if isinstance(data, bool) or not isinstance(data, int | str):
            self.fail("invalid")
        if isinstance(data, int):
            label = project.labels.filter(pk=data).first()
        else:
            label = project.labels.filter(name_key=name_key(data)).first()
        if label is None:
            self.fail("unknown", value=data)
        return label

    def to_representation(self, label: Label):
        return label.pk


class StrictCharField(serializers.CharField):
    """Text only: a number or a list is refused, not turned into a string."""

    default_error_messages = {"invalid": "Must be text (a JSON string)."}

    def to_internal_value(self, data) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictSerializer(serializers.Serializer):
    """Refuses a body that is not an object, and keys it does not know.

    A misspelt key must not be ignored: in a filter it would widen the
    selection, in a delete it would fall back to the default mode.
    """

    what = "This request"

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            self._refuse(
                f"{self.what} must be a JSON object with the keys "
                f"{_listed(self.fields)}."
            )
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            noun = "key" if len(unknown) == 1 else "keys"
            self._refuse(
                f"{self.what} has unknown {noun} {_listed(unknown)}; the allowed "
                f"keys are {_listed(self.fields)}."
            )
        return super().to_internal_value(data)

    @staticmethod
    def _refuse(message: str):
        # Keyed like DRF's own "not an object" error.
        raise serializers.ValidationError(
            {api_settings.NON_FIELD_ERRORS_KEY: [message]}, code="invalid"
        )


def _listed(names) -> str:
    return ", ".join(f"“{name}”" for name in names)


class DeleteLabelSerializer(StrictSerializer):
    what = "The body of a label delete"

    mode = serializers.ChoiceField(
        choices=actions.DeleteMode.choices, default=actions.DeleteMode.LABEL_ONLY
    )


class MergeLabelSerializer(serializers.Serializer):
    into = LabelReferenceField(help_text="The label that receives the images.")


class ImageFilterSerializer(StrictSerializer):
    """Which images a bulk assignment selects; every key is optional."""

    what = "The filter"

    status = serializers.ChoiceField(
        choices=[choice for choice, _ in ImageFilterForm.STATUS_CHOICES],
        required=False,
        error_messages={
            "invalid_choice": "Unknown status “{input}”: use all, unlabeled or labeled."
        },
    )
    label = LabelReferenceField(
        required=False,
        error_messages={
            "null": "Leave “label” out to match any label; images without a label "
            "are selected with status “unlabeled”."
        },
        help_text="Only images with this label (an id or a name).",
    )
    q = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=255,
        help_text="Only images whose file name contains this text.",
    )


class AssignSerializer(StrictSerializer):
    """Either `image_ids` or `filter` selects the images; `label` null removes
    their label."""

    what = "The request"

    image_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        required=False,
        allow_empty=False,
        max_length=actions.MAX_SELECTED_IDS,
    )
    filter = ImageFilterSerializer(
        required=False,
        help_text="Like the labeling page; {} selects every image of the project.",
    )
    label = LabelReferenceField(allow_null=True)

    def validate_image_ids(self, ids: list[int]) -> list[int]:
        return actions.check_image_ids(self.context["project"], ids)

    def validate_filter(self, data: dict) -> ImageFilterForm:
        # The same form as the page, so a filter selects the same images.
        label = data.get("label")
        values = {
            "status": data.get("status", ""),
            "label": label.pk if label else "",
            "q": data.get("q", ""),
        }
        form = ImageFilterForm(values, project=self.context["project"])
        if not form.is_valid():
            raise serializers.ValidationError(
                {field: list(errors) for field, errors in form.errors.items()}
            )
        return form

    def validate(self, data: dict) -> dict:
        if ("image_ids" in data) == ("filter" in data):
            raise serializers.ValidationError(
                "Send either image_ids or filter to say which images to label."
            )
        return data


class ReadinessSerializer(serializers.Serializer):
    ready = serializers.BooleanField()
    missing = serializers.ListField(child=serializers.CharField())
    warnings = serializers.ListField(child=serializers.CharField())
    label_counts = serializers.DictField(child=serializers.IntegerField())
