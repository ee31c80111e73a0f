"""API shapes for training versions and their metrics."""

from rest_framework import serializers

from training.models import TrainingRun


class TrainingVersionSerializer(serializers.ModelSerializer):
    """One row of the training-versions dashboard."""

    dataset_version = serializers.CharField(source="dataset_version.name")
    incremental_from = serializers.CharField(
        source="incremental_from.version", allow_null=True, read_only=True
    )
    duration_seconds = serializers.FloatField(allow_null=True, read_only=True)
    usable = serializers.BooleanField(source="is_usable", read_only=True)
    service_status = serializers.CharField(
        source="service.status", allow_null=True, read_only=True
    )

    class Meta:
        model = TrainingRun
        fields = [
            "id",
            "version",
            "status",
            "status_message",
            "dataset_version",
            "dataset_version_id",
            "train_ratio",
            "preference",
            "flavor",
            "max_minutes",
            "incremental_from",
            "accuracy",
            "precision",
            "recall",
            "f1",
            "duration_seconds",
            "model_size_bytes",
            "usable",
            "service_status",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class LabelMetricsSerializer(serializers.Serializer):
    precision = serializers.FloatField()
    recall = serializers.FloatField()
    f1 = serializers.FloatField()
    support = serializers.IntegerField()
    never_predicted = serializers.BooleanField()


class MistakeSerializer(serializers.Serializer):
    item_id = serializers.IntegerField()
    true = serializers.CharField()
    predicted = serializers.CharField()
    confidence = serializers.FloatField()


class TrainingVersionMetricsSerializer(serializers.Serializer):
    """A training version's full evaluation on its validation set."""

    id = serializers.IntegerField()
    version = serializers.CharField()
    status = serializers.CharField()
    status_message = serializers.CharField()
    accuracy = serializers.FloatField(allow_null=True)
    precision = serializers.FloatField(allow_null=True)
    recall = serializers.FloatField(allow_null=True)
    f1 = serializers.FloatField(allow_null=True)
    count = serializers.IntegerField()
    labels = serializers.ListField(child=serializers.CharField())
    per_label = serializers.DictField(child=LabelMetricsSerializer())
    confusion_matrix = serializers.ListField(
        child=serializers.ListField(child=serializers.IntegerField()),
        help_text="confusion_matrix[true][predicted], in the order of labels.",
    )
    misclassified = MistakeSerializer(many=True)
    history = serializers.JSONField(help_text="Loss and validation accuracy per epoch.")
    timings = serializers.JSONField()


def metrics_payload(run: TrainingRun) -> dict:
    """What TrainingVersionMetricsSerializer renders for a run, finished or not."""
    from training.evaluation import sorted_mistakes

    metrics = run.metrics or {}
    return {
        "id": run.pk,
        "version": run.version,
        "status": run.status,
        "status_message": run.status_message,
        "accuracy": metrics.get("accuracy", run.accuracy),
        "precision": metrics.get("precision", run.precision),
        "recall": metrics.get("recall", run.recall),
        "f1": metrics.get("f1", run.f1),
        "count": metrics.get("count", 0),
        "labels": metrics.get("labels", run.label_names or []),
        "per_label": metrics.get("per_label", {}),
        "confusion_matrix": metrics.get("confusion_matrix", []),
        "misclassified": sorted_mistakes(metrics),
        "history": run.history or [],
        "timings": metrics.get("timings", {}),
    }
