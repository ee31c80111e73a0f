from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from projects.access import project_for_command
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
        project = project_for_command(options["project"], options["owner"])
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
