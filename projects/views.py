import logging

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import Count, Q
from django.shortcuts import redirect, render
from django.urls import reverse
from rest_framework.authtoken.models import Token

from projects.access import get_project_for_user, projects_for_user
from projects.deletion import delete_project
from projects.forms import ProjectForm, SignupForm

logger = logging.getLogger(__name__)


def home(request):
    if request.user.is_authenticated:
        return redirect("projects:list")
    return redirect("login")


def signup(request):
    if request.user.is_authenticated:
        return redirect("projects:list")

    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user)
        logger.info("New account %s", user.username)
        return redirect("projects:list")
    return render(request, "registration/signup.html", {"form": form})


@login_required
def api_token(request):
    """The user's API token, made on the first visit; POST replaces it."""
    from training.models import Service

    if request.method == "POST":
        with transaction.atomic():
            Token.objects.filter(user=request.user).delete()
            Token.objects.create(user=request.user)
        logger.info("New API token for %s", request.user.username)
        messages.success(request, "New API token made: the old one no longer works.")
        return redirect("api_token")

    token, _ = Token.objects.get_or_create(user=request.user)
    # A running service makes the example one that works as it is pasted.
    service = (
        Service.objects.filter(
            project__in=projects_for_user(request.user),
            status=Service.Status.RUNNING,
        )
        .select_related("project", "training_run")
        .order_by("-pk")
        .first()
    )
    if service:
        path = reverse("api-service-predict", args=[service.pk])
    else:
        path = reverse("api-service-predict", args=[0]).replace("/0/", "/SERVICE_ID/")
    ctx = {
        "token": token,
        "service": service,
        "predict_url": request.build_absolute_uri(path),
    }
    return render(request, "projects/api_token.html", ctx)


@login_required
def project_list(request):
    projects = projects_for_user(request.user).annotate(
        image_count=Count(
            "images", filter=Q(images__trashed_at__isnull=True), distinct=True
        ),
        label_count=Count("labels", distinct=True),
    )
    return render(request, "projects/project_list.html", {"projects": projects})


@login_required
def project_create(request):
    form = ProjectForm(request.POST or None, owner=request.user)
    if request.method == "POST" and form.is_valid():
        project = form.save(commit=False)
        project.owner = request.user
        project.save()
        messages.success(request, f"Project “{project.name}” created.")
        return redirect(project)
    return render(request, "projects/project_form.html", {"form": form})


@login_required
def project_detail(request, project_id):
    project = get_project_for_user(request.user, project_id)
    ctx = {
        "project": project,
        "section": "overview",
        "readiness": project.readiness(),
        "image_count": project.images.alive().count(),
        "unlabeled_count": project.images.alive().unlabeled().count(),
    }
    return render(request, "projects/project_detail.html", ctx)


@login_required
def project_rename(request, project_id):
    project = get_project_for_user(request.user, project_id)
    form = ProjectForm(request.POST or None, instance=project, owner=request.user)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Project updated.")
        return redirect(project)
    return render(
        request, "projects/project_form.html", {"form": form, "project": project}
    )


@login_required
def project_delete(request, project_id):
    project = get_project_for_user(request.user, project_id)
    if request.method == "POST":
        name = project.name
        delete_project(project)
        messages.success(request, f"Project “{name}” deleted.")
        return redirect("projects:list")

    ctx = {"project": project, "image_count": project.images.count()}
    return render(request, "projects/project_confirm_delete.html", ctx)
