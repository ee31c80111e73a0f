from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from projects.models import Project, name_key
from training.datasets import publish_dataset_version
from training.models import DEFAULT_TRAIN_RATIO


class Command(BaseCommand):
    help = (
        "Publish a dataset version from a project's labeled images and print its name."
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        # --version names the dataset version here, not Django's version.
        kwargs.setdefault("conflict_handler", "resolve")
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="The project's name.")
        parser.add_argument(
            "--owner", help="The owner's username, when several users share the name."
        )
        parser.add_argument(
            "--version", dest="version_name", help="Version name (default: proposed)."
        )
        parser.add_argument(
            "--train-ratio",
            default=str(DEFAULT_TRAIN_RATIO),
            help="Share of each label's images used for training, 0 to 1 (0.8).",
        )
        parser.add_argument("--seed", type=int, help="Seed of the random split.")

    def handle(self, *args, **options):
        project = self._find_project(options["project"], options["owner"])
        try:
            version = publish_dataset_version(
                project,
                name=options["version_name"],
                train_ratio=options["train_ratio"],
                seed=options["seed"],
                user=project.owner,
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages))
        self.stdout.write(version.name)

    def _find_project(self, name: str, owner: str | None) -> Project:
        projects = Project.objects.filter(name_key=name_key(name)).select_related(
            "owner"
        )
        if owner:
            if not get_user_model().objects.filter(username=owner).exists():
                raise CommandError(f"There is no user named “{owner}”.")
            projects = projects.filter(owner__username=owner)

        found = list(projects[:2])
        if not found:
            whose = f" owned by {owner}" if owner else ""
            raise CommandError(f"There is no project named “{name}”{whose}.")
        if len(found) > 1:
            raise CommandError(
                f"Several users have a project named “{name}”: add --owner USERNAME."
            )
        return found[0]
