"""Deployed services: the list, a service's test page, deploy/stop/start."""

from __future__ import annotations

import base64
import io
import logging

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRefresh

from projects.access import get_project_for_user
from training import deployment, serving
from training.models import Service, TrainingRun

logger = logging.getLogger(__name__)

# The test page shows the model's square crop at most this many pixels wide.
PREVIEW_SIZE = 384


class AutoStopForm(forms.Form):
    """Never, one of the usual durations, or a custom number of hours."""

    auto_stop = forms.ChoiceField(
        label="Stop automatically",
        required=False,
        choices=[("", "Never")]
        + [(str(h), f"After {h} hour{'s' if h > 1 else ''}") for h in (1, 2, 4, 6)]
        + [("custom", "After a custom number of hours")],
    )
    custom_hours = forms.IntegerField(
        label="Hours",
        required=False,
        min_value=1,
        max_value=deployment.MAX_AUTO_STOP_HOURS,
        error_messages=dict.fromkeys(
            ("invalid", "min_value", "max_value"),
            "Auto-stop takes a whole number of hours from 1 to "
            f"{deployment.MAX_AUTO_STOP_HOURS}.",
        ),
    )

    def clean(self):
        data = super().clean()
        choice = data.get("auto_stop")
        if choice == "custom":
            if not data.get("custom_hours"):
                raise ValidationError(
                    "Enter the number of hours (1 to "
                    f"{deployment.MAX_AUTO_STOP_HOURS}) after which to stop."
                )
            data["hours"] = data["custom_hours"]
        else:
            data["hours"] = int(choice) if choice else None
        return data

    @classmethod
    def initial_for(cls, service: Service | None) -> AutoStopForm:
        hours = service.auto_stop_hours if service else None
        if hours is None:
            return cls(initial={"auto_stop": ""})
        if hours in deployment.AUTO_STOP_CHOICES:
            return cls(initial={"auto_stop": str(hours)})
        return cls(initial={"auto_stop": "custom", "custom_hours": hours})


def _get_service_for_user(request, project_id, service_id) -> Service:
    project = get_project_for_user(request.user, project_id)
    service = get_object_or_404(
        Service.objects.select_related("training_run", "project"),
        pk=service_id,
        project=project,
    )
    return deployment.apply_auto_stop(service)


def _back_url(request, project) -> str:
    referer = request.META.get("HTTP_REFERER", "")
    # Only a path or a URL of this site; never a bare word redirect() would
    # take for a view name.
    if referer.startswith(
        ("/", "http://", "https://")
    ) and url_has_allowed_host_and_scheme(
        referer, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return referer
    return reverse("training:services", args=[project.pk])


def _form_errors(form: forms.Form) -> str:
    return " ".join(str(e) for errors in form.errors.values() for e in errors)


@login_required
@require_GET
def service_list(request, project_id):
    project = get_project_for_user(request.user, project_id)
    deployment.refresh_services(project.services.all())

    services = list(project.services.select_related("training_run"))
    stats = deployment.latency_stats(s.pk for s in services)
    for service in services:
        service.latency = stats[service.pk]

    deployable = (
        project.training_runs.filter(
            status__in=TrainingRun.USABLE_STATUSES, service__isnull=True
        )
        .exclude(model_file="")
        .order_by("-created_at", "-id")
    )
    ctx = {
        "project": project,
        "section": "services",
        "services": services,
        "deployable": deployable,
        "auto_stop_form": AutoStopForm.initial_for(None),
    }
    return render(request, "training/service_list.html", ctx)


@login_required
@require_POST
def deploy(request, project_id, run_id):
    project = get_project_for_user(request.user, project_id)
    if request.POST.get("run"):
        # The services page picks the version in a form field.
        run_id = request.POST["run"]
    try:
        run = project.training_runs.get(pk=run_id)
    except (TrainingRun.DoesNotExist, ValueError):
        raise Http404("No such training version")

    existing = Service.objects.filter(training_run=run).first()
    if existing and existing.status in (
        Service.Status.RUNNING,
        Service.Status.DEPLOYING,
    ):
        messages.info(request, f"{run.version} is already deployed.")
        return redirect("training:service_detail", project.pk, existing.pk)

    form = AutoStopForm(request.POST)
    if not form.is_valid():
        messages.error(request, _form_errors(form))
        return redirect("training:services", project.pk)

    try:
        service = deployment.deploy(run, auto_stop_hours=form.cleaned_data["hours"])
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("training:services", project.pk)

    if service.status == Service.Status.FAILED:
        messages.error(
            request, f"{run.version} could not be deployed: {service.status_message}"
        )
    elif service.status == Service.Status.RUNNING:
        messages.success(request, f"{run.version} is deployed and running.")
    else:
        messages.info(request, f"Deploying {run.version}…")
    return redirect("training:service_detail", project.pk, service.pk)


def _detail_context(request, service: Service) -> dict:
    stats = deployment.latency_stats([service.pk])[service.pk]
    return {
        "project": service.project,
        "section": "services",
        "service": service,
        "run": service.training_run,
        "latency": stats,
        "auto_stop_form": AutoStopForm.initial_for(service),
        "api_url": request.build_absolute_uri(f"/api/services/{service.pk}/predict"),
        "batch_max": serving.BATCH_TEST_MAX_IMAGES,
    }


@login_required
@require_GET
def service_detail(request, project_id, service_id):
    service = _get_service_for_user(request, project_id, service_id)
    deployment.refresh_services(Service.objects.filter(pk=service.pk))
    return render(
        request, "training/service_detail.html", _detail_context(request, service)
    )


@login_required
@require_GET
def service_status(request, project_id, service_id):
    """The status card, polled by htmx while the service deploys."""
    service = _get_service_for_user(request, project_id, service_id)
    if request.htmx and request.GET.get("was") != service.status:
        # The page's panels depend on the status: redraw all of it.
        return HttpResponseClientRefresh()
    return render(
        request,
        "training/service_status.html",
        _detail_context(request, service),
    )


@login_required
@require_POST
def service_stop(request, project_id, service_id):
    service = _get_service_for_user(request, project_id, service_id)
    if service.status in (Service.Status.RUNNING, Service.Status.DEPLOYING):
        deployment.stop(service, message="Stopped by its owner.")
        messages.success(request, f"The service for {service.training_run} stopped.")
    return redirect("training:service_detail", project_id, service.pk)


@login_required
@require_POST
def service_start(request, project_id, service_id):
    service = _get_service_for_user(request, project_id, service_id)
    # Starting again keeps the auto-stop chosen before unless the form sets one.
    hours = service.auto_stop_hours
    if "auto_stop" in request.POST:
        form = AutoStopForm(request.POST)
        if not form.is_valid():
            messages.error(request, _form_errors(form))
            return redirect("training:service_detail", project_id, service.pk)
        hours = form.cleaned_data["hours"]

    try:
        service = deployment.start(service, auto_stop_hours=hours)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("training:service_detail", project_id, service.pk)

    if service.status == Service.Status.FAILED:
        messages.error(request, f"The service failed: {service.status_message}")
    elif service.status == Service.Status.RUNNING:
        messages.success(request, f"The service for {service.training_run} is running.")
    return redirect("training:service_detail", project_id, service.pk)


@login_required
@require_POST
def service_auto_stop(request, project_id, service_id):
    service = _get_service_for_user(request, project_id, service_id)
    form = AutoStopForm(request.POST)
    if not form.is_valid():
        messages.error(request, _form_errors(form))
        return redirect("training:service_detail", project_id, service.pk)

    deployment.set_auto_stop(service, form.cleaned_data["hours"])
    if service.auto_stop_hours:
        messages.success(request, "Auto-stop updated.")
    else:
        messages.success(request, "The service will run until you stop it.")
    return redirect("training:service_detail", project_id, service.pk)


@login_required
@require_POST
def service_delete(request, project_id, service_id):
    service = _get_service_for_user(request, project_id, service_id)
    version = service.training_run.version
    deployment.delete(service)
    messages.success(request, f"The service for {version} was deleted.")
    return redirect("training:services", project_id)


def _preview_data_url(image, spec) -> str:
    """A JPEG of the central square the model looks at (orientation applied)."""
    from PIL import Image

    from training.ml.preprocess import crop_box

    box = crop_box(image.width, image.height, spec)
    side = max(1, min(PREVIEW_SIZE, round(box[2] - box[0])))
    preview = image.resize((side, side), Image.Resampling.BICUBIC, box=box)
    buffer = io.BytesIO()
    preview.save(buffer, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def predict_request(service: Service, files) -> tuple[int, dict, object]:
    """Answer one prediction request: (HTTP status, JSON body, result or None).

    Shared by the API and the test page so both follow the same rules.
    """
    from projects.imaging import ImageRejected

    unavailable = deployment.unavailable_reason(service)
    if unavailable:
        status, reason = unavailable
        return status, {"detail": reason, "status": service.status}, None

    try:
        data = serving.read_single_upload(files)
        result = serving.predict_image(service, data)
    except (serving.BadUpload, ImageRejected) as exc:
        return 400, {"detail": str(exc)}, None
    except serving.ModelUnavailable as exc:
        deployment.mark_failed(service, str(exc))
        return 503, {"detail": str(exc), "status": service.status}, None

    label, confidence = result.scores[0]
    deployment.record_prediction(service, label, confidence, result.latency_ms)
    return 200, result.answer, result


@login_required
@require_POST
def service_try(request, project_id, service_id):
    """The test page's prediction: the API answer plus what the page draws.

    A refusal comes with a 200 and `"ok": false`: the page's script shows the
    reason, and a 4xx answer would also log a network error in the console.
    The API answers the same refusals with their 4xx or 5xx status.
    """
    service = _get_service_for_user(request, project_id, service_id)
    status, body, result = predict_request(service, request.FILES)
    if result is None:
        body = {**body, "ok": False, "http_status": status}
    else:
        body = {
            **body,
            "ok": True,
            "all_scores": [
                [label, serving.round_down(p)] for label, p in result.scores
            ],
            "preview": _preview_data_url(result.image, result.spec),
            "width": result.width,
            "height": result.height,
            "notes": result.notes,
            "latency_ms": round(result.latency_ms, 1),
        }
    return JsonResponse(body, json_dumps_params={"ensure_ascii": False})


@login_required
@require_POST
def service_batch_test(request, project_id, service_id):
    service = _get_service_for_user(request, project_id, service_id)
    ctx = _detail_context(request, service)

    unavailable = deployment.unavailable_reason(service)
    upload = request.FILES.get("archive")
    if unavailable:
        ctx["batch_error"] = unavailable[1]
    elif upload is None:
        ctx["batch_error"] = "Choose a zip file of label folders to test."
    elif upload.size > settings.ZIP_MAX_BYTES:
        ctx["batch_error"] = "The zip is larger than uploads may be."
    else:
        try:
            ctx["batch"] = serving.batch_test(service, upload)
            ctx["batch_name"] = upload.name
        except serving.BadUpload as exc:
            ctx["batch_error"] = str(exc)
        except serving.ModelUnavailable as exc:
            deployment.mark_failed(service, str(exc))
            ctx["batch_error"] = str(exc)

    if "batch" in ctx and ctx["batch"].metrics:
        metrics = ctx["batch"].metrics
        ctx["matrix_rows"] = [
            (label, row, metrics["per_label"][label])
            for label, row in zip(
                metrics["labels"], metrics["confusion_matrix"], strict=True
            )
        ]
    if request.htmx:
        # htmx leaves a 4xx answer unswapped and logs an error, so the panel
        # would never show the message: it comes with a 200 here.
        return render(request, "training/service_batch_result.html", ctx)

    status = 400 if "batch_error" in ctx else 200
    if unavailable:
        # The batch panel, where errors show, is hidden on such a service.
        messages.error(request, ctx["batch_error"])
    return render(request, "training/service_detail.html", ctx, status=status)


@login_required
@require_GET
def model_export(request, project_id, run_id):
    """Download a training version's model as a torch.export program and a JSON file."""
    from training import export

    project = get_project_for_user(request.user, project_id)
    run = get_object_or_404(TrainingRun, pk=run_id, project=project)
    if not run.is_usable:
        raise Http404("This training version has no model to export.")

    try:
        archive = export.export_zip(run)
    except export.ExportFailed as exc:
        messages.error(request, str(exc))
        return HttpResponseRedirect(_back_url(request, project))

    return FileResponse(
        archive,
        as_attachment=True,
        filename=export.download_name(run),
        content_type="application/zip",
    )
