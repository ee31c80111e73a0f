"""API shapes for starting and following training runs."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from rest_framework import serializers

from training.datasets import clean_train_ratio
from training.ml.recipes import RECIPES
from training.models import (
    DEFAULT_TRAINING_MINUTES,
    MAX_TRAINING_MINUTES,
    MIN_TRAINING_MINUTES,
    TrainingRun,
)
from training.runs import flavor_choices


class TrainingRunSerializer(serializers.ModelSerializer):
    """A run's parameters, live progress and macro figures."""

    dataset_version = serializers.CharField(source="dataset_version.name")
    incremental_from = serializers.CharField(
        source="incremental_from.version", allow_null=True, read_only=True
    )
    usable = serializers.BooleanField(source="is_usable", read_only=True)
    duration_seconds = serializers.FloatField(allow_null=True, read_only=True)

    class Meta:
        model = TrainingRun
        fields = [
            "id",
            "version",
            "status",
            "status_message",
            "cancel_requested",
            "dataset_version",
            "train_ratio",
            "preference",
            "flavor",
            "max_minutes",
            "incremental_from",
            "incremental_from_version",
            "phase",
            "progress",
            "epoch",
            "epochs_total",
            "loss",
            "val_accuracy",
            "accuracy",
            "precision",
            "recall",
            "f1",
            "label_names",
            "model_size_bytes",
            "usable",
            "duration_seconds",
            "created_at",
            "started_at",
            "finished_at",
            "heartbeat_at",
        ]
        read_only_fields = fields


class TrainingRunDetailSerializer(TrainingRunSerializer):
    class Meta(TrainingRunSerializer.Meta):
        fields = [*TrainingRunSerializer.Meta.fields, "metrics", "history", "log"]
        read_only_fields = fields


class TrainRatioField(serializers.FloatField):
    """A number from 0 to 1, checked as the train page checks it.

    FloatField alone takes true for 1.0 and false for 0.0.
    """

    def to_internal_value(self, data):
        try:
            return clean_train_ratio(data)
        except ValidationError as exc:
            raise serializers.ValidationError(exc.message_dict["train_ratio"])


class StartTrainingSerializer(serializers.Serializer):
    """What POST /api/projects/<id>/training-runs accepts.

    `dataset_version` names an existing dataset version, which keeps its own
    split; without it a new one is published from the current labels, named
    `dataset_version_name` (or the next free "V001"-style name) and split with
    `train_ratio` (0.8 when not given). Giving an existing version together with
    a new version's name or ratio is refused rather than half ignored.
    `incremental_from` names a finished training version ("V001").
    """

    dataset_version = serializers.CharField(required=False, allow_blank=True)
    dataset_version_name = serializers.CharField(
        required=False, allow_blank=True, max_length=32
    )
    train_ratio = TrainRatioField(required=False, min_value=0.0, max_value=1.0)
    incremental_from = serializers.CharField(required=False, allow_blank=True)
    max_minutes = serializers.IntegerField(
        required=False,
        min_value=MIN_TRAINING_MINUTES,
        max_value=MAX_TRAINING_MINUTES,
        default=DEFAULT_TRAINING_MINUTES,
    )
    preference = serializers.ChoiceField(
        choices=list(RECIPES), required=False, default=TrainingRun.Preference.BALANCE
    )
    flavor = serializers.CharField(required=False, default=TrainingRun.Flavor.CPU)

    # The schema generator builds serializers without a project.
    def __init__(self, *args, project=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.project = project

    def validate_dataset_version(self, name):
        if not name:
            return None
        version = self.project.dataset_versions.filter(name=name).first()
        if version is None:
            raise serializers.ValidationError(
                f"This project has no dataset version named “{name}”."
            )
        return version

    def validate(self, data):
        version = data.get("dataset_version")
        if version is None:
            return data

        if data.get("dataset_version_name"):
            raise serializers.ValidationError(
                {
                    "dataset_version_name": "Give dataset_version (train on an "
                    "existing dataset version) or dataset_version_name (publish a "
                    "new one), not both."
                }
            )
        if "train_ratio" in data:
            raise serializers.ValidationError(
                {
                    "train_ratio": f"Dataset version {version.name} keeps its own "
                    f"split (training ratio {version.train_ratio:g}); train_ratio "
                    "applies only when a new dataset version is published. Leave "
                    "it out."
                }
            )
        return data

    def validate_incremental_from(self, name):
        if not name:
            return None
        run = self.project.training_runs.filter(version=name).first()
        if run is None:
            raise serializers.ValidationError(
                f"This project has no training version named “{name}”."
            )
        return run

    def validate_flavor(self, value):
        allowed = [key for key, _ in flavor_choices()]
        if value not in allowed:
            raise serializers.ValidationError(
                f"Unknown or unavailable instance flavor “{value}”: choose "
                f"{' or '.join(allowed)}."
            )
        return value
