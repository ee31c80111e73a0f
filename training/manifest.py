"""ModelArts manifests: dataset versions as JSON Lines, out and back in.

One JSON object per image:

    {"source": "images/<sha256>.jpg", "usage": "TRAIN", "id": "<sha256>",
     "annotation": [{"type": "modelarts/image_classification", "name": "ants",
                     "annotated-by": "human", "creation-time": "2024-05-01 10:00:00"}]}

Exports put the manifest at the root of a zip, next to an `images/` folder, so
every `source` is the image's path inside that zip. Imports read such a zip
back; a source may also be an `obs://` or `s3://` address, matched to the zip
entry whose path it ends with.
"""

from __future__ import annotations

import json
import logging
import posixpath
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from projects.importing import import_file
from projects.models import DEFAULT_LABEL_COLORS, Image, Label, Project
from training.datasets import (
    EVAL,
    TRAIN,
    create_version_from_items,
    validate_dataset_version_name,
    write_zip,
)
from training.models import DatasetVersion, DatasetVersionItem

logger = logging.getLogger(__name__)

ANNOTATION_TYPE = "modelarts/image_classification"
CONTENT_TYPE = "application/jsonlines"
LABEL_MAX_LENGTH = 32
MANIFEST_MAX_BYTES = 64 * 1024 * 1024
USAGES = {"TRAIN": TRAIN, "EVAL": EVAL}
# What reading a damaged, encrypted or oddly compressed zip entry can raise.
_UNREADABLE = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    RuntimeError,
    NotImplementedError,
)


def source_for(item: DatasetVersionItem) -> str:
    """Where the item's image sits inside an exported zip."""
    extension = PurePosixPath(item.file).suffix.lower()
    return f"images/{item.sha256}{extension}"


def manifest_record(item: DatasetVersionItem, created: str) -> dict:
    return {
        "source": source_for(item),
        "usage": item.usage,
        "id": item.sha256,
        "annotation": [
            {
                "type": ANNOTATION_TYPE,
                "name": item.label_name,
                "annotated-by": "human",
                "creation-time": created,
            }
        ],
    }


def build_manifest(version: DatasetVersion) -> str:
    """The version's manifest, one line per image, in item order."""
    created = timezone.localtime(version.created_at).strftime("%Y-%m-%d %H:%M:%S")
    lines = [
        json.dumps(manifest_record(item, created), ensure_ascii=False)
        for item in version.items.order_by("id")
    ]
    return "".join(line + "\n" for line in lines)


def manifest_filename(version: DatasetVersion) -> str:
    return f"{version.name}.manifest"


def export_modelarts_zip(version: DatasetVersion):
    """A temporary file: the manifest at the root and the images under images/."""
    entries: list[tuple[str, str | bytes]] = [
        (manifest_filename(version), build_manifest(version).encode())
    ]
    entries += [(source_for(item), item.file) for item in version.items.order_by("id")]
    return write_zip(entries)


@dataclass
class ManifestLine:
    """One line of an imported manifest and what became of it."""

    number: int
    source: str = ""
    usage: str = ""
    label: str = ""
    member: str = ""
    # ok (checked), imported, duplicate, skipped, error
    status: str = "ok"
    message: str = ""
    image_id: int | None = None

    def fail(self, message: str) -> ManifestLine:
        self.status = "error"
        self.message = message
        return self


@dataclass
class ManifestImportReport:
    """The outcome of importing a manifest zip, for the page and the API."""

    manifest_name: str = ""
    errors: list[str] = field(default_factory=list)
    lines: list[ManifestLine] = field(default_factory=list)
    version: DatasetVersion | None = None

    @property
    def problems(self) -> list[ManifestLine]:
        return [line for line in self.lines if line.status == "error"]

    @property
    def notable(self) -> list[ManifestLine]:
        """The lines a person should read: problems and notes."""
        return [line for line in self.lines if line.status == "error" or line.message]

    @property
    def unremarkable(self) -> int:
        return len(self.lines) - len(self.notable)

    @property
    def imported(self) -> int:
        return sum(1 for line in self.lines if line.status == "imported")

    @property
    def duplicates(self) -> int:
        return sum(1 for line in self.lines if line.status in {"duplicate", "skipped"})

    @property
    def summary(self) -> str:
        if self.version:
            return (
                f"Dataset version {self.version.name} created with "
                f"{self.version.image_count} images ({self.imported} new, "
                f"{self.duplicates} already in the project)."
            )
        if self.errors:
            return "Nothing was imported."
        if any(line.status in {"imported", "duplicate"} for line in self.lines):
            return (
                f"No dataset version was created: {len(self.problems)} of "
                f"{len(self.lines)} lines could not be imported. The images that "
                "were imported stay in the project, labeled; fix the lines below "
                "and import the zip again."
            )
        return (
            f"Nothing was imported: {len(self.problems)} of {len(self.lines)} "
            "lines are not usable. Fix them and import the zip again."
        )

    def as_dict(self) -> dict:
        return {
            "manifest": self.manifest_name,
            "summary": self.summary,
            "errors": self.errors,
            "dataset_version": self.version.pk if self.version else None,
            "dataset_version_name": self.version.name if self.version else None,
            "imported": self.imported,
            "duplicates": self.duplicates,
            "lines": [
                {
                    "line": line.number,
                    "source": line.source,
                    "usage": line.usage,
                    "label": line.label,
                    "status": line.status,
                    "message": line.message,
                    "image_id": line.image_id,
                }
                for line in self.lines
            ],
        }


def parse_manifest(text: str) -> list[ManifestLine]:
    """Check every non-blank line; a line in error says why in `message`."""
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if raw.strip():
            lines.append(_parse_line(number, raw))
    return lines


def _parse_line(number: int, raw: str) -> ManifestLine:
    line = ManifestLine(number=number)
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as exc:
        return line.fail(f"Not valid JSON: {exc.msg} (column {exc.colno}).")
    if not isinstance(record, dict):
        return line.fail("Not a JSON object.")

    source = record.get("source")
    if not isinstance(source, str) or not source.strip():
        return line.fail("No “source”: each line must name its image file.")
    line.source = source.strip()

    usage = record.get("usage")
    if not isinstance(usage, str) or usage.strip().upper() not in USAGES:
        shown = "none" if usage in (None, "") else f"“{usage}”"
        return line.fail(f"Unknown usage {shown}: use TRAIN or EVAL.")
    line.usage = USAGES[usage.strip().upper()]

    annotations = record.get("annotation")
    if not isinstance(annotations, list) or not annotations:
        return line.fail("No “annotation”: each line needs the image's label.")
    names = set()
    for annotation in annotations:
        if not isinstance(annotation, dict):
            return line.fail("Each annotation must be a JSON object.")
        kind = annotation.get("type", ANNOTATION_TYPE)
        if kind != ANNOTATION_TYPE:
            return line.fail(
                f"Annotation type “{kind}” is not image classification "
                f"({ANNOTATION_TYPE})."
            )
        name = annotation.get("name")
        if not isinstance(name, str) or not name.strip():
            return line.fail("An annotation has no label “name”.")
        names.add(name.strip())
    if len({name.lower() for name in names}) > 1:
        listed = ", ".join(sorted(names))
        return line.fail(f"Several labels ({listed}): an image may have one label.")
    line.label = names.pop()
    if len(line.label) > LABEL_MAX_LENGTH:
        return line.fail(
            f"The label “{line.label[:40]}…” is longer than {LABEL_MAX_LENGTH} "
            "characters."
        )
    return line


def find_manifests(names: list[str]) -> list[str]:
    found = []
    for name in names:
        base = posixpath.basename(name).lower()
        if name.startswith("__MACOSX/") or base.startswith("._"):
            continue
        if base.endswith(".manifest") or base in {"manifest.json", "manifest.jsonl"}:
            found.append(name)
    return found


class _ZipIndex:
    """Finds the zip entry a manifest `source` points at."""

    def __init__(self, files: list[str], manifest_name: str):
        self.files = set(files)
        self.base = posixpath.dirname(manifest_name)
        self.by_basename: dict[str, list[str]] = {}
        for name in files:
            self.by_basename.setdefault(posixpath.basename(name), []).append(name)

    def resolve(self, source: str) -> str | None:
        path = source.replace("\\", "/")
        if "://" in path:
            path = path.split("://", 1)[1]
        else:
            for candidate in (posixpath.join(self.base, path.lstrip("/")), path):
                candidate = posixpath.normpath(candidate.lstrip("/"))
                if candidate in self.files:
                    return candidate

        # An address from elsewhere (obs://bucket/data/a.jpg): the entry whose
        # path the source ends with, the longest such path if several.
        matches = [
            name for name in self.files if ("/" + path).endswith("/" + name.lstrip("/"))
        ]
        if matches:
            return max(matches, key=len)
        same_name = self.by_basename.get(posixpath.basename(path), [])
        return same_name[0] if len(same_name) == 1 else None


def import_manifest_zip(
    project: Project, fileobj, *, name: str | None = None, user=None
) -> ManifestImportReport:
    """Import a zip holding a manifest and its images as a new dataset version.

    All or nothing for the version: it is created only when every line is
    usable. When a line is wrong, nothing at all is imported. When an image is
    refused by the import pipeline, the images that did import stay in the
    project with their labels, and no version is created. Raises
    ValidationError for a bad or taken version name, before reading the file.
    """
    if name:
        name = validate_dataset_version_name(project, name)
    report = ManifestImportReport()

    try:
        archive = zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, OSError, ValueError):
        report.errors.append("This file is not a zip archive.")
        return report

    with archive:
        infos = [info for info in archive.infolist() if not info.is_dir()]
        if len(infos) > settings.ZIP_MAX_FILES:
            report.errors.append(
                f"The zip holds {len(infos)} files; at most "
                f"{settings.ZIP_MAX_FILES} are accepted."
            )
            return report

        manifests = find_manifests([info.filename for info in infos])
        if not manifests:
            report.errors.append(
                "No manifest in the zip: it must hold one file ending in .manifest "
                "(or named manifest.json) next to the images it lists."
            )
            return report
        if len(manifests) > 1:
            report.errors.append(
                f"The zip holds several manifests ({', '.join(manifests)}): "
                "keep only one."
            )
            return report
        report.manifest_name = manifests[0]

        text = _read_manifest(archive, report)
        if text is None:
            return report
        report.lines = parse_manifest(text)
        if not report.lines:
            report.errors.append("The manifest is empty.")
            return report

        index = _ZipIndex(
            [i.filename for i in infos if i.filename != report.manifest_name],
            report.manifest_name,
        )
        _match_files(report.lines, index)
        if report.problems:
            return report

        entries = _import_images(project, archive, report.lines, user)

    if report.problems:
        return report

    try:
        report.version = create_version_from_items(
            project, name=name, entries=entries, user=user
        )
    except ValidationError as exc:
        report.errors.extend(exc.messages)
        return report
    logger.info(
        "Imported manifest %s into project %s as dataset version %s",
        report.manifest_name,
        project.pk,
        report.version.name,
    )
    return report


def _read_manifest(archive: zipfile.ZipFile, report: ManifestImportReport):
    info = archive.getinfo(report.manifest_name)
    if info.file_size > MANIFEST_MAX_BYTES:
        report.errors.append(
            f"The manifest is larger than {MANIFEST_MAX_BYTES // 1024 // 1024} MB."
        )
        return None
    try:
        with archive.open(info) as handle:
            data = handle.read(MANIFEST_MAX_BYTES + 1)
    except _UNREADABLE as exc:
        report.errors.append(f"The manifest cannot be read from the zip: {exc}.")
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        report.errors.append("The manifest is not UTF-8 text.")
        return None


def _match_files(lines: list[ManifestLine], index: _ZipIndex) -> None:
    first_line_of: dict[str, int] = {}
    for line in lines:
        if line.status == "error":
            continue
        member = index.resolve(line.source)
        if member is None:
            line.fail(f"“{line.source}” is not in the zip.")
            continue
        if member in first_line_of:
            line.fail(f"The same file as line {first_line_of[member]}.")
            continue
        first_line_of[member] = line.number
        line.member = member


def _import_images(project, archive, lines, user) -> list[tuple[Image, str, str]]:
    """Run each line's image through the shared import; return version entries."""
    limit = settings.IMAGE_MAX_BYTES
    line_of_image: dict[int, ManifestLine] = {}
    for line in lines:
        info = archive.getinfo(line.member)
        if info.file_size > limit:
            line.fail(f"The file is larger than {limit // 1024 // 1024} MB.")
            continue
        try:
            with archive.open(info) as handle:
                data = handle.read(limit + 1)
        except _UNREADABLE as exc:
            line.fail(f"The file cannot be read from the zip: {exc}.")
            continue

        result = import_file(
            project,
            posixpath.basename(line.member),
            data,
            label_name=line.label,
            user=user,
        )
        if result.status == "rejected":
            line.fail(result.message or "The image was refused.")
            continue

        image_id = result.image_id or result.duplicate_of_id
        line.image_id = image_id
        if image_id in line_of_image:
            first = line_of_image[image_id]
            line.status = "skipped"
            line.message = (
                f"The same picture as line {first.number}: the version keeps it "
                "once, as listed there."
            )
            continue
        line_of_image[image_id] = line
        line.status = "imported" if result.status == "accepted" else "duplicate"

    if any(line.status == "error" for line in lines):
        return []

    images = Image.objects.select_related("label").in_bulk(list(line_of_image))
    entries = []
    for image_id, line in line_of_image.items():
        image = images[image_id]
        _apply_label(image, line, user)
        entries.append((image, image.label.name, line.usage))
    return entries


def _apply_label(image: Image, line: ManifestLine, user) -> None:
    """Give the image the manifest's label, as the version will record it."""
    if image.label and image.label.name.lower() == line.label.lower():
        return

    previous = image.label.name if image.label else None
    image.label = _label_named(image.project_id, line.label)
    image.labeled_at = timezone.now()
    image.labeled_by = user if user and user.is_authenticated else None
    image.save(update_fields=["label", "labeled_at", "labeled_by"])
    if previous:
        line.message = (
            f"Already in the project; its label changed from {previous} to "
            f"{image.label.name}, as in the manifest."
        )


def _label_named(project_id: int, name: str) -> Label:
    label = Label.objects.filter(project_id=project_id, name__iexact=name).first()
    if label:
        return label
    color = DEFAULT_LABEL_COLORS[
        Label.objects.filter(project_id=project_id).count() % len(DEFAULT_LABEL_COLORS)
    ]
    try:
        with transaction.atomic():
            return Label.objects.create(project_id=project_id, name=name, color=color)
    except IntegrityError:
        # Someone created it meanwhile.
        return Label.objects.get(project_id=project_id, name__iexact=name)
