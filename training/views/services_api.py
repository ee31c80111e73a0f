"""The services API: list, deploy, stop, start, and predict."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.decorators import api_view, parser_classes
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from projects.access import get_project_for_user
from projects.ids import parse_ids
from training import deployment
from training.models import Service
from training.serializers_services import (
    DeploySerializer,
    PredictionSerializer,
    ServiceDetailSerializer,
    ServiceSerializer,
    StartSerializer,
)
from training.views.services import predict_request


def _get_service_for_user(user, service_id) -> Service:
    service = get_object_or_404(
        Service.objects.select_related("training_run"),
        pk=service_id,
        project__owner=user,
    )
    return deployment.apply_auto_stop(service)


@extend_schema(
    methods=["GET"],
    responses=ServiceSerializer(many=True),
    summary="List services",
    tags=["services"],
)
@extend_schema(
    methods=["POST"],
    request=DeploySerializer,
    responses={
        201: ServiceDetailSerializer,
        200: OpenApiResponse(
            ServiceDetailSerializer,
            description="The version already had a service: a running or deploying "
            "one takes the auto_stop_hours given (null turns auto-stop off); a "
            "stopped or failed one starts again, with the hours given or its own.",
        ),
        400: OpenApiResponse(description="Not a finished version, or bad hours."),
    },
    summary="Deploy a training version",
    description="Answers 201 with a new service, or 200 with the version's "
    "existing service.",
    tags=["services"],
)
@api_view(["GET", "POST"])
def service_list(request):
    services = Service.objects.filter(project__owner=request.user)
    deployment.refresh_services(services)

    if request.method == "GET":
        services = services.select_related("training_run").order_by("-created_at")
        project = request.query_params.get("project", "").strip()
        if project:
            try:
                project_id = parse_ids([project], noun="project")[0]
            except ValidationError as exc:
                return Response({"project": exc.messages}, status=400)
            # Someone else's project is as unknown here as everywhere else.
            get_project_for_user(request.user, project_id)
            services = services.filter(project_id=project_id)
        return Response(ServiceSerializer(services, many=True).data)

    serializer = DeploySerializer(data=request.data, context={"request": request})
    serializer.is_valid(raise_exception=True)
    run = serializer.validated_data["training_run"]
    hours_given = "auto_stop_hours" in serializer.validated_data
    hours = serializer.validated_data.get("auto_stop_hours")

    existing = Service.objects.filter(training_run=run).first()
    if existing is not None:
        if existing.status in (Service.Status.RUNNING, Service.Status.DEPLOYING):
            # Already deployed: the request can only change its auto-stop.
            if hours_given:
                existing = deployment.set_auto_stop(existing, hours)
            return Response(ServiceDetailSerializer(existing).data)
        if not hours_given:
            hours = existing.auto_stop_hours

    try:
        service = deployment.deploy(run, auto_stop_hours=hours)
    except ValidationError as exc:
        return Response({"detail": " ".join(exc.messages)}, status=400)
    created = existing is None
    return Response(
        ServiceDetailSerializer(service).data, status=201 if created else 200
    )


@extend_schema(
    responses=ServiceDetailSerializer, summary="A service", tags=["services"]
)
@api_view(["GET", "DELETE"])
def service_detail(request, service_id):
    service = _get_service_for_user(request.user, service_id)
    if request.method == "DELETE":
        deployment.delete(service)
        return Response(status=status.HTTP_204_NO_CONTENT)
    return Response(ServiceDetailSerializer(service).data)


@extend_schema(
    request=None, responses=ServiceDetailSerializer, summary="Stop", tags=["services"]
)
@api_view(["POST"])
def service_stop(request, service_id):
    service = _get_service_for_user(request.user, service_id)
    if service.status != Service.Status.STOPPED:
        service = deployment.stop(service, message="Stopped by its owner.")
    return Response(ServiceDetailSerializer(service).data)


@extend_schema(
    request=StartSerializer,
    responses=ServiceDetailSerializer,
    summary="Start",
    tags=["services"],
)
@api_view(["POST"])
def service_start(request, service_id):
    service = _get_service_for_user(request.user, service_id)
    serializer = StartSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    hours = serializer.validated_data.get("auto_stop_hours", service.auto_stop_hours)
    try:
        service = deployment.start(service, auto_stop_hours=hours)
    except ValidationError as exc:
        return Response({"detail": " ".join(exc.messages)}, status=409)
    return Response(ServiceDetailSerializer(service).data)


@extend_schema(
    request={
        "multipart/form-data": {
            "type": "object",
            "properties": {"images": {"type": "string", "format": "binary"}},
            "required": ["images"],
        }
    },
    responses={
        200: PredictionSerializer,
        400: OpenApiResponse(description="Not one usable image; `detail` says why."),
        409: OpenApiResponse(description="The service is stopped or failed."),
        503: OpenApiResponse(description="The service is still deploying."),
    },
    summary="Predict the label of one image",
    tags=["services"],
)
@api_view(["POST"])
@parser_classes([MultiPartParser, FormParser, JSONParser])
def service_predict(request, service_id):
    service = _get_service_for_user(request.user, service_id)
    code, body, _ = predict_request(service, request.FILES)
    response = Response(body, status=code)
    if code == 503:
        response["Retry-After"] = "5"
    return response
