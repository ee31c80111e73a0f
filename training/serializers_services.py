from django.urls import reverse
from rest_framework import serializers

from training import deployment
from training.models import Service, TrainingRun


class ServiceSerializer(serializers.ModelSerializer):
    version = serializers.CharField(source="training_run.version", read_only=True)
    predict_url = serializers.SerializerMethodField()
    page_url = serializers.SerializerMethodField()

    class Meta:
        model = Service
        fields = [
            "id",
            "project",
            "training_run",
            "version",
            "status",
            "status_message",
            "auto_stop_hours",
            "auto_stop_at",
            "prediction_count",
            "created_at",
            "started_at",
            "stopped_at",
            "predict_url",
            "page_url",
        ]
        read_only_fields = fields

    def get_predict_url(self, service) -> str:
        return f"/api/services/{service.pk}/predict"

    def get_page_url(self, service) -> str:
        return reverse("training:service_detail", args=[service.project_id, service.pk])


class ServiceDetailSerializer(ServiceSerializer):
    latency_p50_ms = serializers.SerializerMethodField()
    latency_p95_ms = serializers.SerializerMethodField()

    class Meta(ServiceSerializer.Meta):
        fields = ServiceSerializer.Meta.fields + ["latency_p50_ms", "latency_p95_ms"]
        read_only_fields = fields

    def _stats(self, service):
        if not hasattr(service, "_latency"):
            service._latency = deployment.latency_stats([service.pk])[service.pk]
        return service._latency

    def get_latency_p50_ms(self, service) -> float | None:
        return self._stats(service).p50_ms

    def get_latency_p95_ms(self, service) -> float | None:
        return self._stats(service).p95_ms


class DeploySerializer(serializers.Serializer):
    training_run = serializers.IntegerField()
    auto_stop_hours = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=deployment.MAX_AUTO_STOP_HOURS,
    )

    def validate_training_run(self, value):
        user = self.context["request"].user
        run = TrainingRun.objects.filter(pk=value, project__owner=user).first()
        if run is None:
            raise serializers.ValidationError("No such training version.")
        return run


class StartSerializer(serializers.Serializer):
    auto_stop_hours = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=deployment.MAX_AUTO_STOP_HOURS,
    )


class PredictionSerializer(serializers.Serializer):
    """The answer, in the shape of the ModelArts prediction API."""

    predicted_label = serializers.CharField()
    scores = serializers.ListField(
        child=serializers.ListField(), help_text='[["bees", 0.97], ["ants", 0.03]]'
    )
