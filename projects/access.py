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


def project_for_command(name: str, owner: str | None = None) -> Project:
    """The project a management command's --project (and --owner) names.

    Raises CommandError with a sentence for the terminal when there is no such
    project, or when several users have one by that name and --owner is missing.
    """
    from django.contrib.auth import get_user_model
    from django.core.management.base import CommandError

    from projects.models import name_key

    projects = Project.objects.filter(name_key=name_key(name)).select_related("owner")
    if owner:
        if not get_user_model().objects.filter(username=owner).exists():
            raise CommandError(f"There is no user named “{owner}”.")
        projects = projects.filter(owner__username=owner)

    found = list(projects)
    if not found:
        whose = f" owned by {owner}" if owner else ""
        raise CommandError(f"There is no project named “{name}”{whose}.")
    if len(found) > 1:
        owners = ", ".join(sorted(project.owner.username for project in found))
        raise CommandError(
            f"Several users have a project named “{name}” ({owners}): "
            "add --owner USERNAME."
        )
    return found[0]
