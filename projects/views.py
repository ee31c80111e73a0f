import logging

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.shortcuts import redirect, render

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
