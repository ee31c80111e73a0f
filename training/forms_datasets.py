from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from training.datasets import (
    NAME_MAX_LENGTH,
    clean_train_ratio,
    validate_dataset_version_name,
)
from training.models import DEFAULT_TRAIN_RATIO

RATIO_MESSAGE = "The training ratio must be a number from 0 to 1."


def add_validation_error(form: forms.Form, exc: ValidationError) -> None:
    """Show a ValidationError from the dataset functions on the right fields."""
    if hasattr(exc, "error_dict"):
        for field, messages in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, messages)
    else:
        form.add_error(None, exc.messages)


class PublishDatasetForm(forms.Form):
    name = forms.CharField(
        label="Version name",
        help_text="Letters, digits, “.”, “_” and “-”, up to 32 characters, "
        "unique in the project.",
        widget=forms.TextInput(attrs={"maxlength": NAME_MAX_LENGTH}),
    )
    train_ratio = forms.FloatField(
        label="Training ratio",
        initial=DEFAULT_TRAIN_RATIO,
        help_text="The share of each label's images used for training, from 0 to 1; "
        "the rest validates the model. 0.8 keeps 80% for training.",
        error_messages={"invalid": RATIO_MESSAGE, "required": RATIO_MESSAGE},
        widget=forms.NumberInput(attrs={"step": "0.05", "min": "0", "max": "1"}),
    )

    def __init__(self, *args, project, **kwargs):
        super().__init__(*args, **kwargs)
        self.project = project

    def clean_name(self) -> str:
        try:
            return validate_dataset_version_name(
                self.project, self.cleaned_data["name"]
            )
        except ValidationError as exc:
            raise ValidationError(exc.messages)

    def clean_train_ratio(self) -> float:
        try:
            return clean_train_ratio(self.cleaned_data["train_ratio"])
        except ValidationError as exc:
            raise ValidationError(exc.messages)


class ImportManifestForm(forms.Form):
    file = forms.FileField(
        label="Zip file",
        help_text="A .zip holding one manifest (*.manifest or manifest.json) and the "
        "images it lists.",
        widget=forms.ClearableFileInput(attrs={"accept": ".zip,application/zip"}),
    )
    name = forms.CharField(
        label="Version name",
        required=False,
        help_text="Leave empty to use the proposed name.",
        widget=forms.TextInput(attrs={"maxlength": NAME_MAX_LENGTH}),
    )

    def __init__(self, *args, project, **kwargs):
        super().__init__(*args, **kwargs)
        self.project = project

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > settings.ZIP_MAX_BYTES:
            limit = settings.ZIP_MAX_BYTES / 1024**2
            raise ValidationError(f"The zip is larger than {limit:.0f} MB.")
        return upload

    def clean_name(self) -> str | None:
        name = self.cleaned_data["name"].strip()
        if not name:
            return None
        try:
            return validate_dataset_version_name(self.project, name)
        except ValidationError as exc:
            raise ValidationError(exc.messages)
