"""The train form: what a user chooses before clicking Train."""

from __future__ import annotations

from django import forms

from training.datasets import current_dataset_version, propose_dataset_version_name
from training.ml.recipes import RECIPES
from training.models import (
    DEFAULT_TRAIN_RATIO,
    DEFAULT_TRAINING_MINUTES,
    MAX_TRAINING_MINUTES,
    MIN_TRAINING_MINUTES,
    TrainingRun,
)
from training.runs import flavor_choices, incremental_sources


class IncrementalChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, run: TrainingRun) -> str:
        precision = "-" if run.precision is None else f"{run.precision:.1%}"
        return (
            f"{run.version}: precision {precision} ({run.get_preference_display()}, "
            f"dataset version {run.dataset_version.name})"
        )


class DatasetVersionChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, version) -> str:
        return (
            f"{version.name}: {version.image_count} images, training ratio "
            f"{version.train_ratio:g}"
        )


class TrainForm(forms.Form):
    dataset_version = DatasetVersionChoiceField(
        queryset=None,
        required=False,
        empty_label="Publish a new dataset version from the current labels",
        help_text="An existing version keeps its own training/validation split.",
    )
    dataset_version_name = forms.CharField(
        label="New dataset version name",
        max_length=32,
        required=False,
        help_text="Letters, digits, “.”, “_” and “-”; proposed by the studio.",
    )
    # Both apply to a new dataset version only; the page disables them while an
    # existing version is chosen, and the form refuses them with one.
    train_ratio = forms.FloatField(
        label="Training ratio",
        required=False,
        min_value=0.0,
        max_value=1.0,
        initial=DEFAULT_TRAIN_RATIO,
        widget=forms.NumberInput(attrs={"step": "0.05"}),
        help_text="Share of each label's images used for training (0 to 1); the "
        "rest validates the model. Applies to a new dataset version.",
    )
    incremental_from = IncrementalChoiceField(
        queryset=None,
        required=False,
        label="Incremental training from",
        empty_label="None: start from the pretrained network",
        help_text="Starts from a finished version's classifier, matching labels by "
        "name. Continues with the source version's network; the preference only "
        "sets the training schedule.",
    )
    max_minutes = forms.IntegerField(
        label="Maximum training time (minutes)",
        min_value=MIN_TRAINING_MINUTES,
        max_value=MAX_TRAINING_MINUTES,
        initial=DEFAULT_TRAINING_MINUTES,
        help_text=f"{MIN_TRAINING_MINUTES} to {MAX_TRAINING_MINUTES}. When it runs "
        "out, the best model so far is saved.",
    )
    preference = forms.ChoiceField(
        label="Training preference",
        choices=[(key, recipe.title) for key, recipe in RECIPES.items()],
        initial=TrainingRun.Preference.BALANCE,
        widget=forms.RadioSelect,
    )
    flavor = forms.ChoiceField(
        label="Instance flavor", initial=TrainingRun.Flavor.CPU, choices=()
    )

    def __init__(self, *args, project, **kwargs):
        super().__init__(*args, **kwargs)
        self.project = project
        self.fields["dataset_version"].queryset = project.dataset_versions.all()
        self.fields["incremental_from"].queryset = incremental_sources(project)
        self.fields["flavor"].choices = flavor_choices()
        if not self.is_bound:
            self.initial["dataset_version_name"] = propose_dataset_version_name(project)
            self._choose_current_dataset_version()

    def _choose_current_dataset_version(self) -> None:
        """Propose the latest dataset version when publishing would copy it."""
        version = current_dataset_version(self.project)
        if version is None:
            return
        labels_to_train = [c for c in version.label_counts.values() if c["train"]]
        if len(labels_to_train) < 2:
            return

        self.initial["dataset_version"] = version.pk
        # Off until "publish a new version" is chosen (train_form.js), so the
        # form is valid as it comes even without JavaScript.
        for name in ("dataset_version_name", "train_ratio"):
            self.fields[name].widget.attrs["disabled"] = True

    @property
    def recipes(self):
        return list(RECIPES.values())

    def clean(self):
        data = super().clean()
        version = data.get("dataset_version")
        ratio = data.get("train_ratio")
        if version is None:
            if ratio is None and "train_ratio" not in self.errors:
                self.add_error(
                    "train_ratio",
                    "Give the training ratio of the new dataset version (0 to 1).",
                )
            return data

        # The same rule as the API: an existing version is not split again.
        if data.get("dataset_version_name"):
            self.add_error(
                "dataset_version_name",
                f"You chose the existing dataset version {version.name}: leave the "
                "new version's name empty, or choose to publish a new version.",
            )
        if ratio is not None:
            self.add_error(
                "train_ratio",
                f"Dataset version {version.name} keeps its own split (training "
                f"ratio {version.train_ratio:g}): leave the training ratio empty, or "
                "choose to publish a new version.",
            )
        return data

    def start_kwargs(self) -> dict:
        """The cleaned values as training.runs.start_training's arguments."""
        data = self.cleaned_data
        kwargs = {
            "dataset_version": data["dataset_version"],
            "dataset_version_name": data["dataset_version_name"],
            "incremental_from": data["incremental_from"],
            "max_minutes": data["max_minutes"],
            "preference": data["preference"],
            "flavor": data["flavor"],
        }
        if data["train_ratio"] is not None:
            kwargs["train_ratio"] = data["train_ratio"]
        return kwargs
