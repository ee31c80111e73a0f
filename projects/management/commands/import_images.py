"""python manage.py import_images --project NAME [--create] PATH...

Imports folders (walked recursively), single files and zip archives from disk
through the same pipeline as browser uploads.
"""

import os
from collections.abc import Iterator
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from projects.importing import (
    ACCEPTED,
    REJECTED,
    FileResult,
    Importer,
    PendingFile,
    is_ignored,
    label_from_folders,
    pending_from_path,
)
from projects.models import Project, name_key


class Command(BaseCommand):
    help = (
        "Import images from folders, files or .zip archives into a project. With "
        "--labels-from-folders, the folder an image sits in becomes its label "
        "(train/ants/x.jpg is labeled ants; a folder named train, val or test is "
        "not a label)."
    )

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", metavar="PATH")
        parser.add_argument("--project", required=True, help="Project name.")
        parser.add_argument(
            "--create", action="store_true", help="Create the project if missing."
        )
        parser.add_argument(
            "--labels-from-folders",
            action="store_true",
            help="Label each image with the name of the folder it is in.",
        )
        parser.add_argument(
            "--owner",
            help="Username of the project's owner (needed when several accounts "
            "exist).",
        )

    def handle(self, *args, **options):
        paths = [Path(p) for p in options["paths"]]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise CommandError(f"No such file or folder: {', '.join(missing)}")

        owner = self._owner(options["owner"])
        project = self._project(owner, options["project"], options["create"])
        self.verbosity = options["verbosity"]
        self.labels = options["labels_from_folders"]
        self.importer = Importer(project, user=owner, on_result=self._show)

        self.zips: list[tuple[Path, str]] = []
        self.importer.add_many(self._pending_files(paths))
        for path, display_name in self.zips:
            self._import_zip(path, display_name)
        self._summary(project, self.importer.report)

    def _owner(self, username: str | None):
        User = get_user_model()
        if username:
            try:
                return User.objects.get(username=username)
            except User.DoesNotExist:
                raise CommandError(f"No user named {username!r}.")

        users = list(User.objects.order_by("id")[:2])
        if len(users) == 1:
            return users[0]
        if len(users) > 1:
            raise CommandError(
                "Several accounts exist: say whose project this is with "
                "--owner USERNAME."
            )

        user = User.objects.create_user("admin")
        user.set_unusable_password()
        user.save()
        self.stdout.write(
            "No account existed, so the project belongs to a new user “admin”. "
            "Give it a password to log in: python manage.py changepassword admin"
        )
        return user

    def _project(self, owner, name: str, create: bool) -> Project:
        name = name.strip()
        max_length = Project._meta.get_field("name").max_length
        if not name or len(name) > max_length:
            raise CommandError(f"A project name has 1 to {max_length} characters.")
        project = Project.objects.filter(owner=owner, name_key=name_key(name)).first()
        if project:
            return project
        if not create:
            raise CommandError(
                f"{owner.username} has no project named {name!r}; add --create to "
                f"create it."
            )

        with transaction.atomic():
            project = Project.objects.create(owner=owner, name=name)
        self.stdout.write(f"Created project “{project.name}” for {owner.username}.")
        return project

    def _pending_files(self, paths: list[Path]) -> Iterator[PendingFile]:
        """Every file to import, in order; zip archives are kept for later."""
        for path in paths:
            if path.is_dir():
                yield from self._folder(path)
            elif _is_zip(path):
                self.zips.append((path, path.name))
            else:
                folders = [path.resolve().parent.name]
                yield self._pending(path, path.name, folders)

    def _folder(self, root: Path) -> Iterator[PendingFile]:
        for folder, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not is_ignored([d]))
            folders = list(Path(folder).relative_to(root).parts)
            for filename in sorted(filenames):
                if is_ignored([filename]):
                    self.importer.report.ignored.append(filename)
                    continue

                path = Path(folder) / filename
                display_name = "/".join([root.name, *folders, filename])
                if _is_zip(path):
                    self.zips.append((path, display_name))
                else:
                    yield self._pending(path, display_name, folders)

    def _pending(self, path: Path, display_name: str, folders: list[str]):
        label_name = label_from_folders(folders) if self.labels else None
        return pending_from_path(path, display_name=display_name, label_name=label_name)

    def _import_zip(self, path: Path, display_name: str) -> None:
        try:
            with path.open("rb") as archive:
                self.importer.add_zip(
                    archive,
                    labels_from_folders=self.labels,
                    name=display_name,
                    member_prefix=f"{display_name}:",
                )
        except OSError as exc:
            message = f"The archive cannot be read: {exc.strerror or exc}."
            self.importer.reject(display_name, message)

    def _show(self, result: FileResult) -> None:
        if result.status == REJECTED:
            self.stdout.write(
                self.style.WARNING(f"rejected   {result.name}: {result.message}")
            )
        elif self.verbosity >= 2:
            label = f" [{result.label}]" if result.label else ""
            note = f": {result.message}" if result.message else ""
            self.stdout.write(f"{result.status:<10} {result.name}{label}{note}")

    def _summary(self, project: Project, report) -> None:
        self.stdout.write(
            self.style.SUCCESS(
                f"Project “{project.name}”: accepted {report.accepted}, "
                f"duplicates {report.duplicates}, rejected {report.rejected}."
            )
        )
        if report.ignored:
            self.stdout.write(f"Skipped {len(report.ignored)} hidden or system files.")

        counts = report.label_counts()
        if report.accepted:
            parts = [
                f"{label or '(no label)'} {n}" for label, n in sorted(counts.items())
            ]
            self.stdout.write(f"Accepted per label: {', '.join(parts)}.")
        notes = [r for r in report.results if r.status == ACCEPTED and r.message]
        if notes and self.verbosity < 2:
            for result in notes:
                self.stdout.write(f"note       {result.name}: {result.message}")

        total = project.images.alive().count()
        self.stdout.write(
            f"The project now has {total} image{'s' if total != 1 else ''}."
        )


def _is_zip(path: Path) -> bool:
    return path.suffix.lower() == ".zip" and path.is_file()
