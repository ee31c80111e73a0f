"""The gallery, the upload page, and the owner-checked image files."""

import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import SuspiciousOperation, ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import (
    FileResponse,
    Http404,
    HttpResponseNotModified,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.http import (
    content_disposition_header,
    url_has_allowed_host_and_scheme,
)
from django.views.decorators.http import require_POST

from exeml_site.errors import limit_message
from projects import storage
from projects.access import get_project_for_user
from projects.deletion import delete_images
from projects.ids import parse_ids
from projects.image_forms import GalleryFilterForm, UploadForm
from projects.imaging import CONTENT_TYPES
from projects.importing import Importer
from projects.models import Image

logger = logging.getLogger(__name__)

IMAGES_PER_PAGE = 60
# Files the upload page's script sends per request: far under Django's limits
# on files and fields, and a report comes back often.
UPLOAD_BATCH_FILES = 20
# Image files never change under the same URL: an image keeps its bytes for
# life, and a new upload is a new image.
FILE_CACHE_CONTROL = "private, max-age=604800, immutable"


@login_required
def image_list(request, project_id):
    project = get_project_for_user(request.user, project_id)
    filters = GalleryFilterForm(request.GET).filters()
    labels = list(project.labels.all())

    images = project.images.alive()
    if filters["status"] == "labeled":
        images = images.labeled()
    elif filters["status"] == "unlabeled":
        images = images.unlabeled()
    label = next((lb for lb in labels if lb.pk == filters["label"]), None)
    if label:
        images = images.filter(label=label)
    if filters["q"]:
        images = images.filter(original_name__icontains=filters["q"])

    counts = project.images.alive().aggregate(
        all=Count("id"), labeled=Count("id", filter=Q(label__isnull=False))
    )
    counts["unlabeled"] = counts["all"] - counts["labeled"]
    paginator = Paginator(images.select_related("label"), IMAGES_PER_PAGE)
    page = paginator.get_page(request.GET.get("page"))

    ctx = {
        "project": project,
        "section": "images",
        "labels": labels,
        "status": filters["status"] or "",
        "label": label,
        "q": filters["q"] or "",
        "counts": counts,
        "page": page,
        "filtered": bool(filters["status"] or label or filters["q"]),
    }
    return render(request, "projects/image_list.html", ctx)


@login_required
def image_delete(request, project_id, image_id):
    """Delete one image, after a confirmation page."""
    image = _get_image_for_user(request.user, project_id, image_id)
    project = image.project
    back = _safe_next(request, reverse("projects:images", args=[project.pk]))

    if request.method == "POST":
        delete_images(Image.objects.filter(pk=image.pk))
        messages.success(request, f"Deleted {image.original_name}.")
        return HttpResponseRedirect(back)

    ctx = {
        "project": project,
        "section": "images",
        "images": [image],
        "next": back,
        "action": reverse("projects:image_delete", args=[project.pk, image.pk]),
    }
    return render(request, "projects/image_confirm_delete.html", ctx)


@login_required
@require_POST
def images_delete(request, project_id):
    """Delete the images ticked in the gallery, after a confirmation page."""
    project = get_project_for_user(request.user, project_id)
    back = _safe_next(request, reverse("projects:images", args=[project.pk]))
    values = request.POST.getlist("image_ids")
    if not values:
        messages.warning(request, "Select the images to delete first.")
        return HttpResponseRedirect(back)

    try:
        ids = set(parse_ids(values))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages) + " Nothing was deleted.")
        return HttpResponseRedirect(back)

    images = project.images.alive().filter(pk__in=ids)
    if request.POST.get("confirm") == "yes":
        count = delete_images(images)
        message = f"Deleted {count} image{'s' if count != 1 else ''}."
        if len(ids) > count:
            message += f" {_not_found(len(ids) - count)}"
        messages.success(request, message)
        return HttpResponseRedirect(back)

    found = list(images.select_related("label"))
    if len(ids) > len(found):
        messages.warning(request, _not_found(len(ids) - len(found)))
    if not found:
        return HttpResponseRedirect(back)

    ctx = {
        "project": project,
        "section": "images",
        "images": found,
        "next": back,
        "action": reverse("projects:images_delete", args=[project.pk]),
    }
    return render(request, "projects/image_confirm_delete.html", ctx)


@login_required
def image_upload(request, project_id):
    """The upload page; a POST imports one batch of images or one zip archive.

    The page's script sends files in batches and reads the JSON report; without
    JavaScript the form posts normally and the report comes back as a page.
    """
    project = get_project_for_user(request.user, project_id)
    wants_json = "application/json" in request.headers.get("Accept", "")
    ctx = {
        "project": project,
        "section": "images",
        "labels": project.labels.all(),
        "max_image_bytes": settings.IMAGE_MAX_BYTES,
        "max_image_pixels": settings.IMAGE_MAX_PIXELS,
        "max_zip_bytes": settings.ZIP_MAX_BYTES,
        "max_files": settings.UPLOAD_MAX_FILES,
        "batch_files": min(UPLOAD_BATCH_FILES, settings.UPLOAD_MAX_FILES),
    }
    if request.method != "POST":
        ctx["form"] = UploadForm()
        return render(request, "projects/image_upload.html", ctx)

    try:
        files = request.FILES.getlist("files")
        archive = request.FILES.get("archive")
        form = UploadForm(request.POST, files_list=files, archive=archive)
    except SuspiciousOperation as exc:
        # Too many files or fields in one request: Django refuses to parse it.
        # (Usually the CSRF check reads the form first, and handler400 answers.)
        logger.warning("Upload refused for project %s: %s", project.pk, exc)
        return _upload_error(request, ctx, limit_message(exc), wants_json)

    if not form.is_valid():
        error = " ".join(e for errors in form.errors.values() for e in errors)
        return _upload_error(request, ctx, error, wants_json, form)

    importer = Importer(project, user=request.user)
    if files:
        importer.add_uploaded_files(files, label_name=form.cleaned_data["label"])
    if archive:
        importer.add_zip(
            archive,
            labels_from_folders=form.cleaned_data["labels_from_folders"],
            name=archive.name,
        )
    report = importer.report
    logger.info(
        "Upload into project %s: %s accepted, %s duplicates, %s rejected",
        project.pk,
        report.accepted,
        report.duplicates,
        report.rejected,
    )

    if wants_json:
        return JsonResponse(report.to_dict())
    ctx["report"] = report
    return render(request, "projects/upload_report.html", ctx)


@login_required
def image_file(request, project_id, image_id):
    image = _get_image_for_user(request.user, project_id, image_id)
    return _file_response(
        request,
        image.file,
        content_type=CONTENT_TYPES.get(image.format, "application/octet-stream"),
        etag=image.sha256,
        filename=image.original_name,
    )


@login_required
def image_thumb(request, project_id, image_id):
    image = _get_image_for_user(request.user, project_id, image_id)
    return _file_response(
        request, image.thumbnail, content_type="image/jpeg", etag=f"t-{image.sha256}"
    )


def _get_image_for_user(user, project_id, image_id) -> Image:
    # One query: thumbnails are fetched sixty to a page.
    return get_object_or_404(
        Image.objects.select_related("project"),
        pk=image_id,
        project_id=project_id,
        project__owner=user,
    )


def _file_response(request, relative, *, content_type, etag, filename=None):
    etag = f'"{etag}"'
    if etag in request.headers.get("If-None-Match", ""):
        response = HttpResponseNotModified()
    else:
        try:
            handle = storage.media_path(relative).open("rb")
        except FileNotFoundError:
            logger.error("Stored file %s is missing", relative)
            raise Http404("The file of this image is missing.")
        response = FileResponse(handle, content_type=content_type)
        if filename:
            response.headers["Content-Disposition"] = content_disposition_header(
                as_attachment=False, filename=filename
            )

    response.headers["ETag"] = etag
    response.headers["Cache-Control"] = FILE_CACHE_CONTROL
    return response


def _not_found(count: int) -> str:
    if count == 1:
        return "1 selected image is not in this project any more."
    return f"{count} selected images are not in this project any more."


def _safe_next(request, default: str) -> str:
    """The page to go back to: `next` when it is a path on this site.

    Only a path is taken: anything else ("images", "-1") would be read as a
    URL name by redirect() or as a page relative to the current one.
    """
    target = request.POST.get("next") or request.GET.get("next") or ""
    allowed = target.startswith("/") and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return target if allowed else default


def _upload_error(request, ctx, error: str, wants_json: bool, form=None):
    if wants_json:
        return JsonResponse({"error": error}, status=400)
    messages.error(request, error)
    ctx["form"] = form or UploadForm()
    return render(request, "projects/image_upload.html", ctx, status=400)
