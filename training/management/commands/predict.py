"""Predict the label of image files with a training version's model.

    python manage.py predict --project Insects --version V001 photo.jpg ...

Prints one JSON object per file, in the shape of the prediction API plus the
file name: {"file": "photo.jpg", "predicted_label": "bees", "scores": [...]}.
A file that cannot be read gets {"file": ..., "error": "why"} and the command
goes on; it exits with status 1 at the end if any file failed.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from projects.access import project_for_command
from projects.models import Project
from training.models import TrainingRun


class Command(BaseCommand):
    help = "Print the predicted label of each image file, one JSON line per file."

    def create_parser(self, prog_name, subcommand, **kwargs):
        # --version names the training version here, not Django's version.
        kwargs.setdefault("conflict_handler", "resolve")
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", metavar="FILE")
        parser.add_argument("--project", required=True, help="The project's name.")
        parser.add_argument(
            "--owner", help="The project owner's username, when names clash."
        )
        parser.add_argument(
            "--version", dest="run_version", required=True, help="e.g. V001"
        )

    def handle(self, *args, **options):
        from projects.imaging import ImageRejected
        from training import serving

        project = project_for_command(options["project"], options["owner"])
        run = self._run(project, options["run_version"])
        try:
            predictor = serving.load_model(run.model_file, version=run.version)
        except serving.ModelUnavailable as exc:
            raise CommandError(str(exc))

        failed = 0
        for name in options["files"]:
            line = {"file": name}
            try:
                data = Path(name).read_bytes()
                answer, _, _ = serving.predict_bytes(predictor, data)
                line.update(answer)
            except (ImageRejected, OSError) as exc:
                failed += 1
                line["error"] = _reason(exc)
            self.stdout.write(json.dumps(line, ensure_ascii=False))

        if failed:
            total = len(options["files"])
            raise CommandError(f"{failed} of {total} files could not be predicted.")

    def _run(self, project: Project, version: str) -> TrainingRun:
        # isascii(): "²" passes isdigit() but int() refuses it.
        if version.isascii() and version.isdigit():
            version = f"V{int(version):03d}"
        run = project.training_runs.filter(version__iexact=version).first()
        if run is None:
            known = ", ".join(
                project.training_runs.order_by("created_at").values_list(
                    "version", flat=True
                )
            )
            raise CommandError(
                f"Project {project.name!r} has no training version {version!r}"
                + (f" (it has {known})." if known else "; train it first.")
            )
        if not run.is_usable:
            raise CommandError(
                f"{run.version} has no model to predict with "
                f"(its training {run.get_status_display().lower()})."
            )
        return run


def _reason(exc: Exception) -> str:
    if isinstance(exc, FileNotFoundError):
        return "No such file."
    if isinstance(exc, IsADirectoryError):
        return "This is a folder, not a file."
    if isinstance(exc, OSError):
        return f"Cannot read the file: {exc.strerror or exc}."
    return str(exc)
