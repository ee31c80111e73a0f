"""Access rules: every project, and everything in it, belongs to its owner alone.

Other people get a 404 for it, never a 403, so they cannot even learn that it
exists. Pages and the API both go through these helpers.
"""

from django.shortcuts import get_object_or_404

from projects.models import Project


def get_project_for_user(user, project_id) -> Project:
    return get_object_or_404(Project, pk=project_id, owner=user)


def projects_for_user(user):
    return Project.objects.filter(owner=user)
