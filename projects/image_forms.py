from django import forms
from django.conf import settings

from projects.labels import LABEL_NAME_MAX_LENGTH, clean_label_name


class GalleryFilterForm(forms.Form):
    """The gallery's query string; anything it cannot read means "no filter"."""

    STATUS_CHOICES = [("", "All"), ("labeled", "Labeled"), ("unlabeled", "Unlabeled")]

    status = forms.ChoiceField(choices=STATUS_CHOICES, required=False)
    label = forms.IntegerField(required=False, min_value=1)
    q = forms.CharField(required=False, max_length=100, strip=True)

    def filters(self) -> dict:
        """Status, label id and search text; a value that is not valid is None."""
        self.is_valid()
        return {name: self.cleaned_data.get(name) for name in self.fields}


class UploadForm(forms.Form):
    """The fields sent with a batch of images or a zip archive."""

    # Longer names reach clean_label, which explains the limit.
    label = forms.CharField(
        required=False,
        max_length=LABEL_NAME_MAX_LENGTH + 40,
        strip=True,
        help_text="Optional: every image of this upload gets this label.",
    )
    labels_from_folders = forms.BooleanField(
        required=False,
        label="Use folder names as labels",
        help_text="ants/photo.jpg is labeled “ants”; train, val and test folders "
        "are not labels.",
    )

    def __init__(self, *args, files_list=None, archive=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.files_list = files_list or []
        self.archive = archive

    def clean_label(self) -> str:
        label = self.cleaned_data["label"]
        return clean_label_name(label) if label else ""

    def clean(self):
        cleaned = super().clean()
        if not self.files_list and not self.archive:
            raise forms.ValidationError("Choose images or a zip archive to upload.")
        if len(self.files_list) > settings.UPLOAD_MAX_FILES:
            raise forms.ValidationError(
                f"At most {settings.UPLOAD_MAX_FILES} files can be sent at once."
            )
        return cleaned
