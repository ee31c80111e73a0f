"""Train a project from the command line.

    python manage.py train --project Insects [--owner alice]
        [--dataset-version V003] [--train-ratio 0.8] [--preference balance]
        [--max-minutes 60] [--incremental-from V001] [--wait]

Without --wait the run is queued for the background worker, like the Train
button. With --wait it runs in this process and prints the version's metrics
as one JSON object: version, accuracy, precision, recall, f1 (macro averages),
per_label ({label: {precision, recall, f1, support}}) and seconds.
"""

from __future__ import annotations

import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from projects.access import project_for_command
from projects.models import Project
from training.ml.recipes import RECIPES
from training.models import (
    DEFAULT_TRAIN_RATIO,
    DEFAULT_TRAINING_MINUTES,
    TrainingRun,
)
from training.runs import NotReadyToTrain, start_training


class Command(BaseCommand):
    help = "Train a training version of a project (queued, or here with --wait)."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="The project's name.")
        parser.add_argument(
            "--owner", help="The owner's username, when several users share the name."
        )
        parser.add_argument(
            "--dataset-version",
            help="Train on this published dataset version (default: publish a new "
            "one from the current labels).",
        )
        parser.add_argument(
            "--train-ratio",
            type=float,
            default=DEFAULT_TRAIN_RATIO,
            help="Training share of a newly published dataset version (0 to 1).",
        )
        parser.add_argument(
            "--preference", default="balance", help=f"One of {', '.join(RECIPES)}."
        )
        parser.add_argument(
            "--max-minutes",
            type=int,
            default=DEFAULT_TRAINING_MINUTES,
            help="Time limit, 6 to 6000 minutes.",
        )
        parser.add_argument(
            "--incremental-from", help="Start from this training version (V001)."
        )
        parser.add_argument(
            "--flavor", default=TrainingRun.Flavor.CPU, help="cpu or gpu."
        )
        parser.add_argument(
            "--wait",
            action="store_true",
            help="Train in this process and print the metrics as JSON.",
        )

    def handle(self, *args, **options):
        project = project_for_command(options["project"], options["owner"])
        try:
            run = start_training(
                project,
                user=project.owner,
                dataset_version=self._dataset_version(
                    project, options["dataset_version"]
                ),
                train_ratio=options["train_ratio"],
                preference=options["preference"],
                max_minutes=options["max_minutes"],
                flavor=options["flavor"],
                incremental_from=self._source(project, options["incremental_from"]),
                queue=not options["wait"],
            )
        except NotReadyToTrain as exc:
            raise CommandError(
                "The project is not ready to train: " + "; ".join(exc.missing) + "."
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages))

        if not options["wait"]:
            self.stdout.write(
                f"Queued training version {run.version} of “{project.name}”; the "
                "background worker will train it."
            )
            return

        from training.tasks import run_training

        run_training(run.pk)
        run.refresh_from_db()
        if not run.is_usable:
            raise CommandError(
                f"Training version {run.version} {run.get_status_display().lower()}: "
                f"{run.status_message}"
            )
        self.stdout.write(json.dumps(summary(run), ensure_ascii=False))

    def _dataset_version(self, project: Project, name: str | None):
        if not name:
            return None
        version = project.dataset_versions.filter(name=name).first()
        if version is None:
            raise CommandError(
                f"Project “{project.name}” has no dataset version {name}."
            )
        return version

    def _source(self, project: Project, name: str | None):
        if not name:
            return None
        run = project.training_runs.filter(version__iexact=name).first()
        if run is None:
            raise CommandError(
                f"Project “{project.name}” has no training version {name}."
            )
        return run


def summary(run: TrainingRun) -> dict:
    """The figures `train --wait` prints."""
    metrics = run.metrics
    return {
        "version": run.version,
        "status": run.status,
        "preference": run.preference,
        "dataset_version": run.dataset_version.name,
        "evaluated_on": metrics.get("evaluated_on", "validation"),
        "accuracy": run.accuracy,
        "precision": run.precision,
        "recall": run.recall,
        "f1": run.f1,
        "per_label": {
            label: {
                key: figures[key] for key in ("precision", "recall", "f1", "support")
            }
            for label, figures in metrics.get("per_label", {}).items()
        },
        "seconds": round(run.duration_seconds or 0.0, 2),
    }
