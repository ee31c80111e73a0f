from __future__ import annotations

from django import forms
from django.db.models import QuerySet
from django.utils.http import urlencode

from labeling import actions
from projects.models import Label, Project


class LabelForm(forms.Form):
    """Create a label, or rename and recolour one."""

    name = forms.CharField(max_length=actions.MAX_LABEL_NAME + 40, strip=True)
    color = forms.CharField(
        max_length=7, required=False, widget=forms.TextInput(attrs={"type": "color"})
    )

    def __init__(self, *args, project: Project, label: Label | None = None, **kw):
        if label is not None:
            kw.setdefault("initial", {"name": label.name, "color": label.color})
        super().__init__(*args, **kw)
        self.project = project
        self.label = label
        self.fields["name"].widget.attrs.update(
            {"maxlength": actions.MAX_LABEL_NAME, "placeholder": "New label"}
        )

    def clean_name(self) -> str:
        return actions.unique_label_name(
            self.project, self.cleaned_data["name"], label=self.label
        )

    def clean_color(self) -> str:
        color = self.cleaned_data["color"]
        return actions.clean_label_color(color) if color else ""


class MergeLabelForm(forms.Form):
    into = forms.ModelChoiceField(
        queryset=Label.objects.none(),
        label="Merge into",
        empty_label="Choose a label…",
        error_messages={"invalid_choice": "Choose a label of this project."},
    )

    def __init__(self, *args, label: Label, **kw):
        super().__init__(*args, **kw)
        self.fields["into"].queryset = label.project.labels.exclude(pk=label.pk)


class DeleteLabelForm(forms.Form):
    mode = forms.ChoiceField(
        choices=actions.DeleteMode.choices,
        widget=forms.RadioSelect,
        initial=actions.DeleteMode.LABEL_ONLY,
        error_messages={"required": "Choose what to delete."},
    )


class ImageFilterForm(forms.Form):
    """Which images the labeling grid shows, and "select all matching" selects.

    The grid, the bulk assignment and the API filter all go through this form,
    so a filter means the same thing everywhere.
    """

    STATUS_CHOICES = [
        ("all", "All images"),
        ("unlabeled", "Unlabeled"),
        ("labeled", "Labeled"),
    ]

    status = forms.ChoiceField(
        choices=STATUS_CHOICES,
        required=False,
        error_messages={
            "invalid_choice": "Unknown status “%(value)s”: use all, unlabeled or "
            "labeled."
        },
    )
    label = forms.ModelChoiceField(
        queryset=Label.objects.none(),
        required=False,
        empty_label="Any label",
        error_messages={"invalid_choice": "No such label in this project."},
    )
    q = forms.CharField(max_length=255, required=False, strip=True)

    def __init__(self, *args, project: Project, **kw):
        super().__init__(*args, **kw)
        self.project = project
        self.fields["label"].queryset = project.labels.all()
        self.fields["q"].widget.attrs.update(
            {"placeholder": "File name contains…", "type": "search"}
        )

    def values(self) -> dict:
        """The valid part of the filter; an invalid field counts as not set."""
        if not hasattr(self, "cleaned_data"):
            self.is_valid()
        return {k: v for k, v in self.cleaned_data.items() if v}

    def apply(self, images: QuerySet) -> QuerySet:
        values = self.values()
        status = values.get("status", "all")
        if status == "labeled":
            images = images.filter(label__isnull=False)
        elif status == "unlabeled":
            images = images.filter(label__isnull=True)
        if "label" in values:
            images = images.filter(label=values["label"])
        if "q" in values:
            images = images.filter(original_name__icontains=values["q"])
        return images

    def images(self) -> QuerySet:
        return self.apply(self.project.images.alive())

    def is_filtered(self) -> bool:
        values = self.values()
        return (
            bool(values.get("label") or values.get("q"))
            or values.get("status", "all") != "all"
        )

    def querystring(self) -> str:
        """The filter as URL parameters, to carry it across pages and views."""
        values = self.values()
        params = {}
        if values.get("status", "all") != "all":
            params["status"] = values["status"]
        if "label" in values:
            params["label"] = values["label"].pk
        if "q" in values:
            params["q"] = values["q"]
        return urlencode(params)
