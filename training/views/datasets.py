"""Dataset version pages: list, publish, detail, exports, import, delete."""

import logging
import mimetypes

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import content_disposition_header
from django.utils.text import slugify

from projects import storage
from projects.access import get_project_for_user
from training import manifest
from training.datasets import (
    delete_dataset_version,
    export_class_folders,
    left_out_message,
    propose_dataset_version_name,
    publish_dataset_version,
)
from training.forms_datasets import (
    ImportManifestForm,
    PublishDatasetForm,
    add_validation_error,
)
from training.models import DEFAULT_TRAIN_RATIO, DatasetVersion, DatasetVersionItem

logger = logging.getLogger(__name__)

ITEMS_PER_PAGE = 60


def _get_version_for_user(request, project_id, version_id):
    project = get_project_for_user(request.user, project_id)
    version = get_object_or_404(DatasetVersion, pk=version_id, project=project)
    return project, version


def download_name(version: DatasetVersion, suffix: str) -> str:
    project = slugify(version.project.name) or "project"
    return f"{project}-{version.name}{suffix}"


@login_required
def dataset_list(request, project_id):
    project = get_project_for_user(request.user, project_id)
    versions = project.dataset_versions.select_related("created_by").annotate(
        run_count=Count("training_runs")
    )
    ctx = {
        "project": project,
        "section": "datasets",
        "versions": versions,
        "labeled_count": project.images.alive().labeled().count(),
    }
    return render(request, "training/dataset_list.html", ctx)


@login_required
def dataset_publish(request, project_id):
    project = get_project_for_user(request.user, project_id)
    initial = {
        "name": propose_dataset_version_name(project),
        "train_ratio": DEFAULT_TRAIN_RATIO,
    }
    form = PublishDatasetForm(request.POST or None, initial=initial, project=project)
    if request.method == "POST" and form.is_valid():
        try:
            version = publish_dataset_version(
                project,
                name=form.cleaned_data["name"],
                train_ratio=form.cleaned_data["train_ratio"],
                user=request.user,
            )
        except ValidationError as exc:
            add_validation_error(form, exc)
        else:
            messages.success(
                request,
                f"Dataset version {version.name} published with "
                f"{version.image_count} images.",
            )
            if left_out := left_out_message(version):
                messages.warning(request, left_out)
            return redirect("training:dataset_detail", project.pk, version.pk)

    ctx = {
        "project": project,
        "section": "datasets",
        "form": form,
        "readiness": project.readiness(),
        "labeled_count": project.images.alive().labeled().count(),
    }
    return render(request, "training/dataset_publish.html", ctx)


@login_required
def dataset_detail(request, project_id, version_id):
    project, version = _get_version_for_user(request, project_id, version_id)

    # Per label, the training images first ("TRAIN" sorts after "EVAL").
    items = version.items.order_by("label_name", "-usage", "id")
    usage = request.GET.get("usage", "")
    if usage in DatasetVersionItem.Usage.values:
        items = items.filter(usage=usage)
    label = request.GET.get("label", "")
    if label in version.label_names:
        items = items.filter(label_name=label)
    page = Paginator(items, ITEMS_PER_PAGE).get_page(request.GET.get("page"))

    ctx = {
        "project": project,
        "section": "datasets",
        "version": version,
        "page": page,
        "usage": usage,
        "label": label,
        "usages": DatasetVersionItem.Usage.choices,
        "runs": version.training_runs.order_by("-created_at"),
        "train_total": sum(c["train"] for c in version.label_counts.values()),
        "eval_total": sum(c["eval"] for c in version.label_counts.values()),
    }
    return render(request, "training/dataset_detail.html", ctx)


@login_required
def dataset_delete(request, project_id, version_id):
    project, version = _get_version_for_user(request, project_id, version_id)
    runs = list(version.training_runs.order_by("version"))
    if request.method == "POST":
        try:
            delete_dataset_version(version)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return redirect("training:dataset_detail", project.pk, version.pk)
        messages.success(request, f"Dataset version {version.name} deleted.")
        return redirect("training:datasets", project.pk)

    ctx = {"project": project, "section": "datasets", "version": version, "runs": runs}
    return render(request, "training/dataset_confirm_delete.html", ctx)


def manifest_response(version: DatasetVersion) -> HttpResponse:
    response = HttpResponse(
        manifest.build_manifest(version).encode(), content_type=manifest.CONTENT_TYPE
    )
    response["Content-Disposition"] = content_disposition_header(
        as_attachment=True, filename=download_name(version, ".manifest")
    )
    return response


def class_folders_response(version: DatasetVersion) -> FileResponse:
    return FileResponse(
        export_class_folders(version),
        as_attachment=True,
        filename=download_name(version, "-folders.zip"),
        content_type="application/zip",
    )


def modelarts_zip_response(version: DatasetVersion) -> FileResponse:
    return FileResponse(
        manifest.export_modelarts_zip(version),
        as_attachment=True,
        filename=download_name(version, "-modelarts.zip"),
        content_type="application/zip",
    )


@login_required
def dataset_manifest(request, project_id, version_id):
    _, version = _get_version_for_user(request, project_id, version_id)
    return manifest_response(version)


@login_required
def dataset_export_folders(request, project_id, version_id):
    project, version = _get_version_for_user(request, project_id, version_id)
    try:
        return class_folders_response(version)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("training:dataset_detail", project.pk, version.pk)


@login_required
def dataset_export_modelarts(request, project_id, version_id):
    _, version = _get_version_for_user(request, project_id, version_id)
    return modelarts_zip_response(version)


def _item_file_response(request, project_id, item_id, *, thumbnail: bool):
    project = get_project_for_user(request.user, project_id)
    item = get_object_or_404(
        DatasetVersionItem, pk=item_id, dataset_version__project=project
    )
    relative = item.thumbnail if thumbnail else item.file
    try:
        handle = storage.media_path(relative).open("rb")
    except (OSError, ValueError):
        raise Http404("The file of this image is gone.")

    content_type = "image/jpeg"
    if not thumbnail:
        content_type = mimetypes.guess_type(relative)[0] or "application/octet-stream"
    response = FileResponse(handle, content_type=content_type)
    # Stored files are named by their content, so they never change.
    response["Cache-Control"] = "private, max-age=86400"
    return response


@login_required
def dataset_item_thumb(request, project_id, item_id):
    return _item_file_response(request, project_id, item_id, thumbnail=True)


@login_required
def dataset_item_file(request, project_id, item_id):
    return _item_file_response(request, project_id, item_id, thumbnail=False)


@login_required
def dataset_import(request, project_id):
    project = get_project_for_user(request.user, project_id)
    form = ImportManifestForm(
        request.POST or None, request.FILES or None, project=project
    )
    report = None
    if request.method == "POST" and form.is_valid():
        try:
            report = manifest.import_manifest_zip(
                project,
                form.cleaned_data["file"],
                name=form.cleaned_data["name"],
                user=request.user,
            )
        except ValidationError as exc:
            add_validation_error(form, exc)

    # The report stays on screen, with a link to the new version, so the notes
    # on single lines (duplicates, changed labels) are not lost in a redirect.
    ctx = {
        "project": project,
        "section": "datasets",
        "form": form,
        "report": report,
        "proposed_name": propose_dataset_version_name(project),
    }
    return render(request, "training/dataset_import.html", ctx)
