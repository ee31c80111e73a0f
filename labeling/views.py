"""The labeling screens: the grid with bulk assignment, the focused one-image
view driven by the keyboard, label management and the trash.

The grid and the focused view answer htmx requests with the parts of the page
that changed (tiles, label counts, readiness) instead of a whole page.
"""

from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_POST
from django_htmx.http import replace_url, reswap, retarget

from labeling import actions, trash
from labeling.forms import DeleteLabelForm, ImageFilterForm, LabelForm, MergeLabelForm
from projects.access import get_project_for_user
from projects.ids import parse_id, parse_ids
from projects.models import Image, Label, Project

logger = logging.getLogger(__name__)

GRID_PAGE_SIZE = 48
TRASH_PAGE_SIZE = 96
# The focused view remembers this many assignments per project for undo.
UNDO_DEPTH = 50
_UNDO_SESSION_KEY = "labeling_undo"


def _get_label(project: Project, label_id) -> Label:
    return get_object_or_404(project.labels, pk=label_id)


def _as_int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _label_from_post(project: Project, value: str | None) -> Label | None:
    """The label an assignment asks for: "" (or "none") removes the label."""
    if value in (None, "", "none"):
        return None
    pk = parse_id(value)
    label = project.labels.filter(pk=pk).first() if pk else None
    if label is None:
        raise ValidationError("This label does not exist in this project any more.")
    return label


def _error(request, message: str, redirect_to: str) -> HttpResponse:
    """Tell the user what went wrong, in the status line of the page."""
    if not request.htmx:
        messages.error(request, message)
        return redirect(redirect_to)

    # 422 rather than 400: with DEBUG on, django-htmx's script replaces the
    # whole page with any 400 answer, and this one is meant for one line.
    html = render_to_string(
        "labeling/_status.html", {"message": message, "error": True}, request
    )
    response = HttpResponse(html, status=422)
    retarget(response, "#labeling-status")
    reswap(response, "outerHTML")
    return response


def _project_counts(project: Project) -> dict:
    return project.images.aggregate(
        alive_count=Count("pk", filter=Q(trashed_at__isnull=True)),
        unlabeled_count=Count(
            "pk", filter=Q(trashed_at__isnull=True, label__isnull=True)
        ),
        trash_count=Count("pk", filter=Q(trashed_at__isnull=False)),
    )


def _panel_context(project: Project) -> dict:
    """What the label panel and the readiness panel show."""
    labels = actions.labels_with_counts(project)
    return {
        "labels": labels,
        "next_color": actions.next_label_color(project, [lb.color for lb in labels]),
        "readiness": project.readiness(),
        **_project_counts(project),
    }


def _grid_context(project: Project, data) -> dict:
    filter_form = ImageFilterForm(data, project=project)
    images = filter_form.images().select_related("label").order_by("-id")
    page = Paginator(images, GRID_PAGE_SIZE).get_page(data.get("page"))
    return {
        "filter_form": filter_form,
        "filter_query": filter_form.querystring(),
        "filter_values": filter_form.values(),
        "page": page,
        "images": page.object_list,
        "match_count": page.paginator.count,
    }


def _label_page_url(project: Project, filter_query: str = "", page=None) -> str:
    url = reverse("labeling:label", args=[project.pk])
    params = [p for p in (filter_query, f"page={page}" if page else "") if p]
    return url + ("?" + "&".join(params) if params else "")


# -- The labeling grid --------------------------------------------------------


@login_required
def label_images(request, project_id):
    project = get_project_for_user(request.user, project_id)
    ctx = {
        "project": project,
        "section": "label",
        **_grid_context(project, request.GET),
    }

    if request.htmx and request.htmx.target == "grid-area":
        return render(request, "labeling/_grid.html", ctx)

    ctx.update(_panel_context(project))
    ctx["label_form"] = LabelForm(project=project)
    return render(request, "labeling/label_images.html", ctx)


@login_required
@require_POST
def assign_labels(request, project_id):
    """Assign one label to (or remove it from) the whole selection at once.

    The selection is either the ticked image ids or, with `all_matching=1`,
    every image matching the filter sent along, however many pages it spans.
    """
    project = get_project_for_user(request.user, project_id)
    filter_form = ImageFilterForm(request.POST, project=project)
    back = _label_page_url(
        project, filter_form.querystring(), _as_int(request.POST.get("page"))
    )

    try:
        label = _label_from_post(project, request.POST.get("assign"))
        if request.POST.get("all_matching") == "1":
            if not filter_form.is_valid():
                raise ValidationError(_first_error(filter_form))
            count = actions.assign_label_to_queryset(
                project, filter_form.images(), label, user=request.user
            )
        else:
            ids = request.POST.getlist("image")
            if not ids:
                raise ValidationError("Select at least one image first.")
            ids = actions.check_image_ids(project, ids)
            count = actions.assign_label_to_ids(project, ids, label, user=request.user)
    except ValidationError as exc:
        return _error(request, " ".join(exc.messages), back)

    noun = "image" if count == 1 else "images"
    if label is None:
        message = f"Label removed from {count} {noun}."
    else:
        message = f"{count} {noun} labeled “{label.name}”."

    if not request.htmx:
        messages.success(request, message)
        return redirect(back)

    ctx = {
        "project": project,
        "message": message,
        **_grid_context(project, request.POST),
        **_panel_context(project),
    }
    return render(request, "labeling/_assign_response.html", ctx)


def _first_error(form) -> str:
    for errors in form.errors.values():
        return errors[0]
    return "The filter is not valid."


# -- The focused, keyboard-driven view ----------------------------------------


def _next_unlabeled(project: Project, sequence, after: Image | None):
    """The unlabeled image after `after` (newest first, wrapping round): in the
    current filter if it has one, otherwise anywhere in the project."""
    candidates = [sequence.filter(label__isnull=True)]
    candidates.append(project.images.alive().filter(label__isnull=True))
    for images in candidates:
        if after is None:
            found = images.order_by("-pk").first()
        else:
            images = images.exclude(pk=after.pk)
            found = (
                images.filter(pk__lt=after.pk).order_by("-pk").first()
                or images.order_by("-pk").first()
            )
        if found:
            return found
    return None


def _focus_context(request, project, image, filter_form, message="") -> dict:
    sequence = filter_form.images()
    ctx = {
        "project": project,
        "section": "label",
        "image": image,
        "labels": actions.labels_with_counts(project),
        "readiness": project.readiness(),
        "filter_form": filter_form,
        "filter_query": filter_form.querystring(),
        "filter_values": filter_form.values(),
        "message": message,
        "can_undo": bool(_undo_stack(request, project)),
        "total": sequence.count(),
        "unlabeled_count": project.images.alive().unlabeled().count(),
    }
    if image is None:
        return ctx

    ctx["prev_id"] = (
        sequence.filter(pk__gt=image.pk).order_by("pk").values_list("pk", flat=True)
    ).first()
    ctx["next_id"] = (
        sequence.filter(pk__lt=image.pk).order_by("-pk").values_list("pk", flat=True)
    ).first()
    skip_to = _next_unlabeled(project, sequence, image)
    ctx["skip_id"] = skip_to.pk if skip_to else ctx["next_id"]
    ctx["position"] = sequence.filter(pk__gt=image.pk).count() + 1
    return ctx


def _focus_url(project: Project, image: Image | None, filter_query: str) -> str:
    params = [f"image={image.pk}" if image else "", filter_query]
    query = "&".join(p for p in params if p)
    return reverse("labeling:focus", args=[project.pk]) + ("?" + query if query else "")


def _render_focus(request, project, image, filter_form, message="") -> HttpResponse:
    ctx = _focus_context(request, project, image, filter_form, message)
    response = render(request, "labeling/_focus_response.html", ctx)
    return replace_url(response, _focus_url(project, image, ctx["filter_query"]))


def _alive_image(project: Project, image_id) -> Image | None:
    pk = parse_id(image_id)
    if pk is None:
        return None
    return project.images.alive().select_related("label").filter(pk=pk).first()


@login_required
def focus_image(request, project_id):
    """One image large, labeled with number keys; `?image=<id>` opens that one."""
    project = get_project_for_user(request.user, project_id)
    filter_form = ImageFilterForm(request.GET, project=project)

    if "image" in request.GET:
        image = _alive_image(project, request.GET["image"])
        if image is None:
            raise Http404("No such image in this project.")
    else:
        sequence = filter_form.images()
        image = _next_unlabeled(project, sequence, None) or sequence.first()

    ctx = _focus_context(request, project, image, filter_form)
    if request.htmx and request.htmx.target == "focus-panel":
        return render(request, "labeling/_focus_panel.html", ctx)
    return render(request, "labeling/focus.html", ctx)


def _undo_stack(request, project: Project) -> list:
    return request.session.get(_UNDO_SESSION_KEY, {}).get(str(project.pk), [])


def _push_undo(request, project: Project, entry: dict) -> None:
    stacks = request.session.get(_UNDO_SESSION_KEY, {})
    stack = stacks.get(str(project.pk), [])
    stack = [*stack, entry][-UNDO_DEPTH:]
    stacks[str(project.pk)] = stack
    request.session[_UNDO_SESSION_KEY] = stacks


def _pop_undo(request, project: Project) -> dict | None:
    stacks = request.session.get(_UNDO_SESSION_KEY, {})
    stack = stacks.get(str(project.pk), [])
    if not stack:
        return None
    entry = stack.pop()
    stacks[str(project.pk)] = stack
    request.session[_UNDO_SESSION_KEY] = stacks
    return entry


@login_required
@require_POST
def assign_focused(request, project_id):
    """Label the focused image, then bring up the next unlabeled one."""
    project = get_project_for_user(request.user, project_id)
    filter_form = ImageFilterForm(request.POST, project=project)
    image = _alive_image(project, request.POST.get("image"))
    back = _focus_url(project, image, filter_form.querystring())
    if image is None:
        return _error(request, "This image is not in this project any more.", back)

    try:
        label = _label_from_post(project, request.POST.get("assign"))
    except ValidationError as exc:
        return _error(request, " ".join(exc.messages), back)

    _push_undo(
        request,
        project,
        {
            "image": image.pk,
            "before": image.label_id,
            "before_at": image.labeled_at.isoformat() if image.labeled_at else None,
            "before_by": image.labeled_by_id,
            "after": label.pk if label else None,
        },
    )
    actions.assign_label_to_ids(project, [image.pk], label, user=request.user)

    if label is None:
        message = f"Label removed from {image.original_name}."
    else:
        message = f"{image.original_name} labeled “{label.name}”."
    sequence = filter_form.images()
    # With nothing unlabeled left, stay on this image rather than moving on to
    # labeled ones, where the next key press would silently relabel a photo.
    following = _next_unlabeled(project, sequence, image)
    if following is None:
        following = image
        message += " Every image in this view is labeled now."
    # Re-read with its label; it may have been deleted in the meantime.
    images = project.images.select_related("label")
    following = images.filter(pk=following.pk).first() or images.get(pk=image.pk)

    if not request.htmx:
        messages.success(request, message)
        return redirect(_focus_url(project, following, filter_form.querystring()))
    return _render_focus(request, project, following, filter_form, message)


@login_required
@require_POST
def undo_focused(request, project_id):
    """Undo the last assignment made in the focused view, unless someone else
    has changed that image's label since."""
    project = get_project_for_user(request.user, project_id)
    filter_form = ImageFilterForm(request.POST, project=project)
    current = _alive_image(project, request.POST.get("image"))
    entry = _pop_undo(request, project)

    if entry is None:
        message = "Nothing to undo."
        image = current
    else:
        message, image = _undo(project, entry)
        image = image or current

    if not request.htmx:
        messages.info(request, message)
        return redirect(_focus_url(project, image, filter_form.querystring()))
    return _render_focus(request, project, image, filter_form, message)


def _undo(project: Project, entry: dict) -> tuple[str, Image | None]:
    image = _alive_image(project, entry["image"])
    if image is None:
        return "Nothing undone: that image was deleted meanwhile.", None

    before = project.labels.filter(pk=entry["before"]).first()
    if entry["before"] and before is None:
        return "Nothing undone: its previous label was deleted meanwhile.", image

    # Only undo if the image still carries what this view gave it.
    restored = (
        project.images.filter(pk=image.pk, label_id=entry["after"])
        .alive()
        .update(
            label=before,
            labeled_at=parse_datetime(entry["before_at"] or "") if before else None,
            labeled_by_id=entry["before_by"] if before else None,
        )
    )
    if not restored:
        return (
            f"Nothing undone: {image.original_name} was relabeled by someone else.",
            image,
        )

    image.refresh_from_db()
    shown = f"“{before.name}”" if before else "unlabeled"
    return f"Undone: {image.original_name} is {shown} again.", image


# -- Managing labels ----------------------------------------------------------


@login_required
def label_create(request, project_id):
    project = get_project_for_user(request.user, project_id)
    if request.method != "POST":
        return redirect("labeling:label", project.pk)

    form = LabelForm(request.POST, project=project)
    message = ""
    if form.is_valid():
        try:
            label = actions.create_label(
                project, form.cleaned_data["name"], form.cleaned_data["color"] or None
            )
        except ValidationError as exc:
            form.add_error("name", exc)
        else:
            message = f"Label “{label.name}” added."
            form = LabelForm(project=project)

    if not request.htmx:
        if message:
            messages.success(request, message)
        else:
            errors = [e for field_errors in form.errors.values() for e in field_errors]
            messages.error(request, " ".join(errors))
        return redirect("labeling:label", project.pk)

    ctx = {
        "project": project,
        "label_form": form,
        "message": message,
        # The grid's filter came along, so its label menu keeps its choice.
        "filter_values": ImageFilterForm(request.POST, project=project).values(),
        **_panel_context(project),
    }
    return render(request, "labeling/_label_panel_response.html", ctx)


@login_required
def label_edit(request, project_id, label_id):
    """Rename and recolour a label; the page also offers merge and delete."""
    project = get_project_for_user(request.user, project_id)
    label = _get_label(project, label_id)
    form = LabelForm(request.POST or None, project=project, label=label)

    if request.method == "POST" and form.is_valid():
        old_name = label.name
        try:
            actions.update_label(
                label,
                name=form.cleaned_data["name"],
                color=form.cleaned_data["color"] or None,
            )
        except ValidationError as exc:
            form.add_error("name", exc)
        else:
            if old_name != label.name:
                messages.success(request, f"“{old_name}” renamed to “{label.name}”.")
            else:
                messages.success(request, f"Label “{label.name}” saved.")
            return redirect("labeling:label", project.pk)

    return _render_label_edit(
        request, project, label, form, MergeLabelForm(label=label)
    )


def _render_label_edit(request, project, label, form, merge_form, status=200):
    ctx = {
        "project": project,
        "section": "label",
        "label": label,
        "form": form,
        "merge_form": merge_form,
        "image_count": actions.images_touched_by_delete(label),
    }
    return render(request, "labeling/label_edit.html", ctx, status=status)


@login_required
@require_POST
def label_merge(request, project_id, label_id):
    project = get_project_for_user(request.user, project_id)
    label = _get_label(project, label_id)
    merge_form = MergeLabelForm(request.POST, label=label)

    if not merge_form.is_valid():
        form = LabelForm(project=project, label=label)
        return _render_label_edit(request, project, label, form, merge_form, 400)

    target = merge_form.cleaned_data["into"]
    moved = actions.merge_labels(label, target, user=request.user)
    noun = "image" if moved == 1 else "images"
    messages.success(
        request, f"“{label.name}” merged into “{target.name}”: {moved} {noun} moved."
    )
    return redirect("labeling:label", project.pk)


@login_required
def label_delete(request, project_id, label_id):
    """Ask how to delete, stating how many images it touches, then delete."""
    project = get_project_for_user(request.user, project_id)
    label = _get_label(project, label_id)
    form = DeleteLabelForm(request.POST or None)

    if request.method == "POST" and form.is_valid():
        mode = form.cleaned_data["mode"]
        touched = actions.delete_label(label, mode, user=request.user)
        noun = "image" if touched == 1 else "images"
        if mode == actions.DeleteMode.LABEL_ONLY:
            outcome = f"its {touched} {noun} are now unlabeled"
        elif mode == actions.DeleteMode.LABEL_AND_IMAGES:
            outcome = f"its {touched} {noun} went to the trash"
        else:
            outcome = f"its {touched} {noun} were deleted with their files"
        messages.success(request, f"Label “{label.name}” deleted; {outcome}.")
        return redirect("labeling:label", project.pk)

    ctx = {
        "project": project,
        "section": "label",
        "label": label,
        "form": form,
        "image_count": actions.images_touched_by_delete(label),
    }
    return render(request, "labeling/label_confirm_delete.html", ctx)


# -- The trash ----------------------------------------------------------------


@login_required
def trash_list(request, project_id):
    project = get_project_for_user(request.user, project_id)
    images = trash.trashed_images(project).select_related("label")
    page = Paginator(images.order_by("-trashed_at", "-id"), TRASH_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    ctx = {
        "project": project,
        "section": "label",
        "page": page,
        "images": page.object_list,
        "trash_count": page.paginator.count,
    }
    return render(request, "labeling/trash.html", ctx)


@login_required
@require_POST
def trash_restore(request, project_id):
    project = get_project_for_user(request.user, project_id)
    if request.POST.get("all") == "1":
        restored = trash.restore_images(project)
    else:
        values = request.POST.getlist("image")
        if not values:
            messages.error(request, "Select the images to restore first.")
            return redirect("labeling:trash", project.pk)
        try:
            ids = parse_ids(values)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return redirect("labeling:trash", project.pk)
        restored = trash.restore_images(project, ids)

    noun = "image" if restored == 1 else "images"
    messages.success(request, f"{restored} {noun} restored.")
    return redirect("labeling:trash", project.pk)


@login_required
def trash_empty(request, project_id):
    project = get_project_for_user(request.user, project_id)
    if request.method == "POST":
        deleted = trash.empty_trash(project)
        noun = "image" if deleted == 1 else "images"
        messages.success(request, f"Trash emptied: {deleted} {noun} deleted for good.")
        return redirect("labeling:trash", project.pk)

    ctx = {
        "project": project,
        "section": "label",
        "trash_count": trash.trashed_images(project).count(),
    }
    return render(request, "labeling/trash_confirm_empty.html", ctx)
