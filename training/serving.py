"""Deployed models kept in memory, one per running service, in this process.

A model is loaded the first time a service needs it (when it is deployed, or on
the first prediction after the web server restarts) and stays loaded until the
service stops. Loading imports torch, so nothing here touches training.ml at
import time: pages that never predict never pay for it.
"""

from __future__ import annotations

import gc
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings

from projects import storage

if TYPE_CHECKING:
    from django.utils.datastructures import MultiValueDict
    from PIL import Image as PILImage

    from training.models import Service

logger = logging.getLogger(__name__)

# The prediction API answers with this many labels at most.
TOP_LABELS = 5


class ModelUnavailable(Exception):
    """The service's model file is missing or cannot be loaded."""


class BadUpload(ValueError):
    """The request does not hold exactly one usable file; str() says why."""


@dataclass
class _Loaded:
    # The model file's absolute path.
    model_file: str
    predictor: Any


_lock = threading.Lock()
_loaded: dict[int, _Loaded] = {}
# One lock per service, so a slow load does not hold up other services.
_load_locks: dict[int, threading.Lock] = {}


def _load_lock(service_id: int) -> threading.Lock:
    with _lock:
        return _load_locks.setdefault(service_id, threading.Lock())


def _model_key(model_file: str) -> str:
    try:
        return str(storage.media_path(model_file))
    except ValueError:
        return model_file


def _cached(service_id: int, model_file: str):
    with _lock:
        entry = _loaded.get(service_id)
    # Database ids can be reused (a test rolls back, a service is deleted and
    # another created), so an entry counts only if it holds the same model.
    if entry and entry.model_file == _model_key(model_file):
        return entry.predictor
    return None


def damaged_model_message(version: str) -> str:
    return (
        f"The model file of {version} is damaged or was written by an "
        "incompatible version; train the version again."
    )


def load_model(model_file: str, *, version: str = "this training version"):
    """Load a training version's model from its file under MEDIA_ROOT."""
    try:
        path = storage.media_path(model_file or ".missing")
    except ValueError:
        raise ModelUnavailable("The model file is not where models are kept.")
    if not path.is_file():
        raise ModelUnavailable(
            "The model file of this training version is missing. "
            "Train the version again to deploy it."
        )

    from training.ml.engine import load_predictor
    from training.ml.runtime import set_prediction_threads

    set_prediction_threads(settings.PREDICTION_THREADS)
    try:
        return load_predictor(path)
    except Exception:
        # Whatever torch raises (KeyError, UnpicklingError, RuntimeError...)
        # means nothing to a user; the log keeps it for an operator.
        logger.exception("Could not load the model %s of %s", model_file, version)
        raise ModelUnavailable(damaged_model_message(version))


def get_predictor(service: Service):
    """The service's predictor, loading it into this process if needed."""
    model_file = service.training_run.model_file
    predictor = _cached(service.pk, model_file)
    if predictor is not None:
        return predictor

    with _load_lock(service.pk):
        predictor = _cached(service.pk, model_file)
        if predictor is not None:
            return predictor

        logger.info("Loading the model of service %s (%s)", service.pk, model_file)
        predictor = load_model(model_file, version=service.training_run.version)
        with _lock:
            _loaded[service.pk] = _Loaded(_model_key(model_file), predictor)
        return predictor


def evict(service_id: int) -> bool:
    """Free a stopped service's model. True if this process had it loaded."""
    with _lock:
        entry = _loaded.pop(service_id, None)
        nothing_left = not _loaded
    if entry is None:
        return False

    del entry
    if nothing_left:
        # Only a loaded predictor can have brought the engine in.
        from training.ml.engine import release_backbones

        release_backbones()
    gc.collect()
    logger.info("Freed the model of service %s", service_id)
    return True


def evict_all_but(service_ids) -> list[int]:
    """Free every loaded model whose service is not in `service_ids`.

    A service can be stopped by another process (the worker's auto-stop), so a
    request that looks at services first drops what is no longer running.
    """
    keep = set(service_ids)
    with _lock:
        stale = [pk for pk in _loaded if pk not in keep]
    for pk in stale:
        evict(pk)
    return stale


def loaded_service_ids() -> list[int]:
    with _lock:
        return sorted(_loaded)


def round_down(probability: float, places: int = 4) -> float:
    """Round toward zero, so that rounded scores never add up to more than 1."""
    scale = 10**places
    return math.floor(probability * scale) / scale


def prediction_answer(scores: list[tuple[str, float]], top: int | None = TOP_LABELS):
    """The answer in the shape of the ModelArts prediction API.

    {"predicted_label": "bees", "scores": [["bees", 0.97], ["ants", 0.03]]}
    """
    ranked = sorted(scores, key=lambda item: -item[1])
    if top is not None:
        ranked = ranked[:top]
    return {
        "predicted_label": ranked[0][0],
        "scores": [[label, round_down(float(p))] for label, p in ranked],
    }


def warm_up(predictor) -> None:
    from PIL import Image

    predictor.predict([Image.new("RGB", (320, 240), (128, 128, 128))])


def read_single_upload(files: MultiValueDict, field_name: str = "images") -> bytes:
    """The bytes of the one file sent in `field_name`, or BadUpload."""
    uploads = files.getlist(field_name)
    if not uploads:
        if files:
            raise BadUpload(f"Send the image in the multipart field “{field_name}”.")
        raise BadUpload(
            f"No image was sent: put one image file in the multipart field "
            f"“{field_name}”."
        )
    if len(uploads) > 1:
        raise BadUpload(f"Send one image per request, not {len(uploads)}.")

    upload = uploads[0]
    if upload.size == 0:
        raise BadUpload("The file is empty.")
    if upload.size > settings.IMAGE_MAX_BYTES:
        raise BadUpload(
            f"The file is {upload.size / 1024 / 1024:.1f} MB; files over "
            f"{settings.IMAGE_MAX_BYTES / 1024 / 1024:.1f} MB are refused."
        )
    return upload.read()


@dataclass
class PredictionResult:
    answer: dict
    # Every label's probability, highest first.
    scores: list[tuple[str, float]]
    image: PILImage.Image
    width: int
    height: int
    notes: list[str] = field(default_factory=list)
    latency_ms: float = 0.0
    # The model's preprocessing, to show the photo as the model saw it.
    spec: Any = None


def decode_for(predictor, data: bytes):
    """Decode uploaded bytes as import does, at the scale the model needs.

    Raises projects.imaging.ImageRejected for a file that is not a usable image.
    """
    from projects.imaging import decode_image

    # A JPEG decodes much faster at a reduced scale; the model's preprocessing
    # gives the same pixels' scale either way.
    size = predictor.spec.decode_size
    return decode_image(data, draft_size=(size, size))


def predict_bytes(predictor, data: bytes, top: int | None = TOP_LABELS):
    """(answer in the API shape, all scores, decoded image) for one file."""
    decoded = decode_for(predictor, data)
    scores = [(label, float(p)) for label, p in predictor.predict([decoded.image])[0]]
    return prediction_answer(scores, top=top), scores, decoded


def predict_image(service: Service, data: bytes) -> PredictionResult:
    """Decode an image as import does and ask the service's model about it.

    Raises projects.imaging.ImageRejected for a file that is not a usable
    image, and ModelUnavailable when the model cannot be loaded.
    """
    started = time.perf_counter()
    predictor = get_predictor(service)
    answer, scores, decoded = predict_bytes(predictor, data)
    latency_ms = (time.perf_counter() - started) * 1000

    return PredictionResult(
        answer=answer,
        scores=scores,
        image=decoded.image,
        width=decoded.width,
        height=decoded.height,
        notes=list(decoded.notes),
        latency_ms=latency_ms,
        spec=predictor.spec,
    )


# A batch test runs inside one web request, so it takes a bounded number of
# images; a larger check belongs in a dataset version and a training run.
BATCH_TEST_MAX_IMAGES = 1000
BATCH_SIZE = 16


@dataclass
class BatchTestResult:
    # compute_metrics() over the images whose folder names a label the model
    # knows; None when there are none.
    metrics: dict | None
    tested: int = 0
    # Folder name -> number of images, for folders that name no model label.
    unknown_labels: dict[str, int] = field(default_factory=dict)
    # (file name, reason) for files that are not usable images.
    rejected: list[tuple[str, str]] = field(default_factory=list)
    # Files outside any label folder.
    skipped: list[str] = field(default_factory=list)


def batch_test(service: Service, fileobj) -> BatchTestResult:
    """Predict every photo of a zip of label folders and score the answers.

    Raises BadUpload for a file that is not a usable zip, ImageRejected never
    (bad photos are listed in the result), ModelUnavailable when the model
    cannot be loaded.
    """
    import zipfile

    from projects.imaging import ImageRejected
    from projects.importing import is_ignored, label_from_folders
    from training.evaluation import compute_metrics

    try:
        archive = zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise BadUpload("The file is not a zip archive.")

    with archive:
        entries = [info for info in archive.infolist() if not info.is_dir()]
        if len(entries) > settings.ZIP_MAX_FILES:
            raise BadUpload(
                f"The zip holds {len(entries)} files; at most "
                f"{settings.ZIP_MAX_FILES} are read."
            )

        result = BatchTestResult(metrics=None)
        wanted = []
        for info in entries:
            # The same folder rules as a zip import: ants/x.jpg and
            # train/ants/x.jpg are ants; hidden and system files are skipped.
            parts = [p for p in info.filename.replace("\\", "/").split("/") if p]
            if not parts or is_ignored(parts):
                continue
            folder = label_from_folders(parts[:-1])
            if not folder:
                result.skipped.append(info.filename)
                continue
            wanted.append((info, folder))

        if len(wanted) > BATCH_TEST_MAX_IMAGES:
            raise BadUpload(
                f"The zip holds {len(wanted)} files in label folders; a batch test "
                f"takes at most {BATCH_TEST_MAX_IMAGES}."
            )
        if not wanted:
            raise BadUpload(
                "The zip holds no photos in label folders: put each label's photos "
                "in a folder named after the label (ants/, bees/, ...)."
            )

        predictor = get_predictor(service)
        labels = list(predictor.label_names)
        by_lower = {name.lower(): i for i, name in enumerate(labels)}
        y_true: list[int] = []
        y_pred: list[int] = []
        pending: list[tuple[int, Any]] = []

        def flush():
            answers = predictor.predict([image for _, image in pending])
            for (truth, _), scores in zip(pending, answers, strict=True):
                y_true.append(truth)
                y_pred.append(by_lower[scores[0][0].lower()])
            pending.clear()

        for info, folder in wanted:
            truth = by_lower.get(folder.lower())
            if truth is None:
                result.unknown_labels[folder] = result.unknown_labels.get(folder, 0) + 1
                continue
            if info.file_size > settings.IMAGE_MAX_BYTES:
                result.rejected.append(
                    (info.filename, "The file is larger than images may be.")
                )
                continue
            try:
                image = decode_for(predictor, archive.read(info)).image
            except ImageRejected as exc:
                result.rejected.append((info.filename, str(exc)))
                continue
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as exc:
                result.rejected.append((info.filename, f"Cannot be read: {exc}"))
                continue
            pending.append((truth, image))
            if len(pending) == BATCH_SIZE:
                flush()
        if pending:
            flush()

    result.tested = len(y_true)
    if y_true:
        result.metrics = compute_metrics(labels, y_true, y_pred)
    return result
