"""A training version deployed as a real-time service: deploy, stop, start.

Deploying loads the model in the web process, the one that answers
predictions, in a background thread; the service shows "deploying" until the
model has answered a first prediction, then "running", or "failed" with the
reason. The worker is not used for this: it may be busy training for hours.

A service may stop itself after some hours. Every request that touches a
service applies an expired auto-stop first, and `stop_expired_services` runs
every few minutes in the worker, so a forgotten service does not keep its model
in memory for long.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F, Window
from django.db.models.functions import RowNumber
from django.utils import timezone
from django_q.conf import Conf

from training import serving
from training.models import Prediction, Service, TrainingRun

logger = logging.getLogger(__name__)

AUTO_STOP_CHOICES = (1, 2, 4, 6)
MAX_AUTO_STOP_HOURS = 24
# Latency figures are computed over this many of a service's latest predictions,
# and older rows are pruned beyond it.
LATENCY_WINDOW = 1000
PRUNE_EVERY = 500
SCHEDULE_NAME = "Stop services past their auto-stop time"
# A service still deploying after this long lost its loading thread.
DEPLOY_TIMEOUT = timedelta(minutes=10)


def validate_auto_stop_hours(hours: int | None) -> int | None:
    if hours is None:
        return None
    if not 1 <= hours <= MAX_AUTO_STOP_HOURS:
        raise ValidationError(
            f"Auto-stop takes a whole number of hours from 1 to {MAX_AUTO_STOP_HOURS}."
        )
    return hours


def deploy(run: TrainingRun, *, auto_stop_hours: int | None = None) -> Service:
    """Deploy a training version, or start its stopped service again.

    A service that is already running or deploying is returned as it is.
    """
    if not run.is_usable:
        raise ValidationError(
            f"{run.version} cannot be deployed: only a finished training version "
            "with a model can be."
        )
    auto_stop_hours = validate_auto_stop_hours(auto_stop_hours)

    with transaction.atomic():
        service, created = Service.objects.select_for_update().get_or_create(
            training_run=run, defaults={"project_id": run.project_id}
        )
        if not created and service.status in (
            Service.Status.RUNNING,
            Service.Status.DEPLOYING,
        ):
            return service

        service.status = Service.Status.DEPLOYING
        service.status_message = ""
        service.auto_stop_hours = auto_stop_hours
        service.auto_stop_at = None
        # Deploying since; replaced by the time it started running.
        service.started_at = timezone.now()
        service.stopped_at = None
        service.save()

    if auto_stop_hours:
        ensure_auto_stop_schedule()
    logger.info("Deploying %s of project %s", run.version, run.project_id)
    _load_in_background(service.pk)
    service.refresh_from_db()
    return service


def start(service: Service, *, auto_stop_hours: int | None = None) -> Service:
    return deploy(service.training_run, auto_stop_hours=auto_stop_hours)


def _load_in_background(service_id: int) -> None:
    # Tests run background work in-process (django-q's sync mode); so does this.
    if Conf.SYNC:
        load_service(service_id)
        return

    def run():
        try:
            load_service(service_id)
        finally:
            connection.close()

    thread = threading.Thread(
        target=run, name=f"deploy-service-{service_id}", daemon=True
    )
    transaction.on_commit(thread.start)


def load_service(service_id: int) -> None:
    """Load a deploying service's model into this process and mark it running."""
    service = (
        Service.objects.select_related("training_run")
        .filter(pk=service_id, status=Service.Status.DEPLOYING)
        .first()
    )
    if service is None:
        return

    try:
        predictor = serving.get_predictor(service)
        # A first prediction proves the model works and warms it up, so the
        # first real request is as fast as the next ones.
        serving.warm_up(predictor)
    except Exception as exc:
        if isinstance(exc, serving.ModelUnavailable):
            reason = str(exc)
        else:
            logger.exception("Service %s failed its first prediction", service_id)
            reason = f"The model could not answer a test prediction: {exc}"
        serving.evict(service_id)
        Service.objects.filter(pk=service_id, status=Service.Status.DEPLOYING).update(
            status=Service.Status.FAILED,
            status_message=reason,
            stopped_at=timezone.now(),
        )
        logger.warning("Service %s failed to deploy: %s", service_id, reason)
        return

    now = timezone.now()
    # Read again: a deploy request may have changed the hours while it loaded.
    hours = (
        Service.objects.filter(pk=service_id)
        .values_list("auto_stop_hours", flat=True)
        .first()
    )
    updated = Service.objects.filter(
        pk=service_id, status=Service.Status.DEPLOYING
    ).update(
        status=Service.Status.RUNNING,
        status_message="",
        started_at=now,
        auto_stop_at=now + timedelta(hours=hours) if hours else None,
    )
    if not updated:
        # Stopped while it was loading.
        serving.evict(service_id)
        return
    logger.info("Service %s is running", service_id)


def stop(service: Service, *, message: str = "") -> Service:
    """Stop a service and free its model in this process."""
    Service.objects.filter(pk=service.pk).exclude(status=Service.Status.STOPPED).update(
        status=Service.Status.STOPPED,
        status_message=message,
        stopped_at=timezone.now(),
        auto_stop_at=None,
    )
    serving.evict(service.pk)
    logger.info("Service %s stopped %s", service.pk, message)
    service.refresh_from_db()
    return service


def delete(service: Service) -> None:
    service_id = service.pk
    service.delete()
    serving.evict(service_id)
    logger.info("Service %s deleted", service_id)


def set_auto_stop(service: Service, hours: int | None) -> Service:
    """Change when a service stops itself; counted from now if it is running."""
    hours = validate_auto_stop_hours(hours)
    service.auto_stop_hours = hours
    if service.status == Service.Status.RUNNING:
        service.auto_stop_at = (
            timezone.now() + timedelta(hours=hours) if hours else None
        )
    service.save(update_fields=["auto_stop_hours", "auto_stop_at"])
    if hours:
        ensure_auto_stop_schedule()
    return service


def _auto_stop_message(service: Service) -> str:
    hours = service.auto_stop_hours
    if not hours:
        return "Stopped automatically."
    return f"Stopped automatically after {hours} hour{'s' if hours != 1 else ''}."


def stop_expired_services(queryset=None) -> int:
    """Stop every running service whose auto-stop time has passed.

    Safe to run from the worker on a schedule and from any request. Returns how
    many services it stopped.
    """
    services = Service.objects.all() if queryset is None else queryset
    expired = services.filter(
        status=Service.Status.RUNNING, auto_stop_at__lte=timezone.now()
    )
    stopped = 0
    for service in expired:
        updated = Service.objects.filter(
            pk=service.pk,
            status=Service.Status.RUNNING,
            auto_stop_at__lte=timezone.now(),
        ).update(
            status=Service.Status.STOPPED,
            status_message=_auto_stop_message(service),
            stopped_at=service.auto_stop_at,
            auto_stop_at=None,
        )
        serving.evict(service.pk)
        if updated:
            stopped += 1
            logger.info("Service %s reached its auto-stop time", service.pk)
    return stopped


def apply_auto_stop(service: Service) -> Service:
    """Stop the service first if its auto-stop time has passed."""
    now = timezone.now()
    if (
        service.status == Service.Status.RUNNING
        and service.auto_stop_at
        and service.auto_stop_at <= now
    ):
        stop_expired_services(Service.objects.filter(pk=service.pk))
        service.refresh_from_db()
    elif (
        service.status == Service.Status.DEPLOYING
        and service.started_at
        and service.started_at < now - DEPLOY_TIMEOUT
    ):
        fail_stalled_deployments(Service.objects.filter(pk=service.pk))
        service.refresh_from_db()
    return service


def unavailable_reason(service: Service) -> tuple[int, str] | None:
    """The HTTP status and reason why a service cannot predict now, if it cannot."""
    version = service.training_run.version
    if service.status == Service.Status.RUNNING:
        return None
    if service.status == Service.Status.DEPLOYING:
        return 503, (
            f"The service for {version} is still deploying; try again in a few seconds."
        )
    if service.status == Service.Status.STOPPED:
        why = f" {service.status_message}" if service.status_message else ""
        return 409, f"The service for {version} is stopped.{why} Start it to predict."
    return 409, (
        f"The service for {version} failed to deploy: {service.status_message} "
        "Start it again once the problem is fixed."
    )


def mark_failed(service: Service, reason: str) -> None:
    Service.objects.filter(pk=service.pk).update(
        status=Service.Status.FAILED, status_message=reason, stopped_at=timezone.now()
    )
    serving.evict(service.pk)
    service.refresh_from_db()


def fail_stalled_deployments(queryset=None) -> int:
    """Mark failed the services whose model never finished loading.

    Loading takes seconds; one still deploying long after was lost, most likely
    to a restart of the web server.
    """
    services = Service.objects.all() if queryset is None else queryset
    return services.filter(
        status=Service.Status.DEPLOYING,
        started_at__lt=timezone.now() - DEPLOY_TIMEOUT,
    ).update(
        status=Service.Status.FAILED,
        status_message=(
            "Loading the model did not finish; the server may have restarted "
            "meanwhile. Start the service again."
        ),
        stopped_at=timezone.now(),
    )


def refresh_services(queryset) -> None:
    """Apply expired auto-stops and free models of services no longer running."""
    stop_expired_services(queryset)
    fail_stalled_deployments(queryset)
    running = Service.objects.filter(status=Service.Status.RUNNING)
    serving.evict_all_but(running.values_list("pk", flat=True))


def ensure_auto_stop_schedule() -> None:
    from django_q.models import Schedule

    Schedule.objects.get_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": "training.deployment.stop_expired_services",
            "schedule_type": Schedule.MINUTES,
            "minutes": 5,
            "repeats": -1,
        },
    )


def record_prediction(
    service: Service, label: str, confidence: float, latency_ms: float
) -> None:
    with transaction.atomic():
        Service.objects.filter(pk=service.pk).update(
            prediction_count=F("prediction_count") + 1
        )
        prediction = Prediction.objects.create(
            service=service,
            predicted_label=label[:32],
            confidence=confidence,
            latency_ms=latency_ms,
        )
    if prediction.pk % PRUNE_EVERY == 0:
        _prune_predictions(service)


def _prune_predictions(service: Service) -> None:
    oldest_kept = (
        Prediction.objects.filter(service=service)
        .order_by("-id")
        .values_list("id", flat=True)[LATENCY_WINDOW - 1 : LATENCY_WINDOW]
    )
    if oldest_kept:
        Prediction.objects.filter(service=service, id__lt=oldest_kept[0]).delete()


@dataclass
class LatencyStats:
    p50_ms: float | None = None
    p95_ms: float | None = None
    sample_size: int = 0


def percentile(values: list[float], fraction: float) -> float:
    """Linear interpolation between the closest ranks of sorted `values`."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def latency_stats(service_ids) -> dict[int, LatencyStats]:
    """p50 and p95 latency over each service's latest predictions, in one query."""
    ids = list(service_ids)
    rows = (
        Prediction.objects.filter(service_id__in=ids)
        .annotate(
            rank=Window(
                RowNumber(), partition_by=[F("service_id")], order_by=F("id").desc()
            )
        )
        .filter(rank__lte=LATENCY_WINDOW)
        .values_list("service_id", "latency_ms")
    )
    samples: dict[int, list[float]] = {pk: [] for pk in ids}
    for service_id, latency in rows:
        samples[service_id].append(latency)

    stats = {}
    for pk, values in samples.items():
        if values:
            stats[pk] = LatencyStats(
                p50_ms=percentile(values, 0.5),
                p95_ms=percentile(values, 0.95),
                sample_size=len(values),
            )
        else:
            stats[pk] = LatencyStats()
    return stats
