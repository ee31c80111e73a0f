"""The one rule for label names, wherever a label is created or renamed.

The labeling pages and API, the upload form, the import pipeline (labels from
zip folders) and the manifest import all clean names here, so a label can
always be written as one folder of a class-folder export and two labels never
differ by whitespace alone.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

LABEL_NAME_MAX_LENGTH = 32
_FORBIDDEN_SEPARATORS = {"/": "“/”", "\\": "“\\”"}


def clean_label_name(name) -> str:
    """The name as it is stored, or ValidationError saying what is wrong.

    Leading and trailing whitespace goes, runs of whitespace inside (tabs and
    line breaks included) become one space; the name may not hold a slash, a
    backslash or another control character, may not be "." or "..", and has
    1 to LABEL_NAME_MAX_LENGTH characters.
    """
    if not isinstance(name, str):
        raise ValidationError("A label name must be text.")
    name = unicodedata.normalize("NFC", " ".join(name.split()))
    if not name:
        raise ValidationError("Give the label a name.")

    if any(unicodedata.category(ch) in {"Cc", "Cs"} for ch in name):
        raise ValidationError(
            "A label name cannot contain control characters; use letters, digits, "
            "spaces and punctuation."
        )

    shown = name if len(name) <= 40 else name[:40] + "…"
    for separator, quoted in _FORBIDDEN_SEPARATORS.items():
        if separator in name:
            raise ValidationError(
                f"A label name cannot contain {quoted} (“{shown}”): labels "
                "become folder names when a dataset version is exported."
            )
    if name in {".", ".."}:
        raise ValidationError(f"“{name}” cannot be a label name.")
    if len(name) > LABEL_NAME_MAX_LENGTH:
        raise ValidationError(
            f"A label name has at most {LABEL_NAME_MAX_LENGTH} characters "
            f"(this one has {len(name)})."
        )
    return name


def next_label_color(project, used: Iterable[str] | None = None) -> str:
    """The first default colour no label of the project uses yet."""
    from projects.models import DEFAULT_LABEL_COLORS

    if used is None:
        used = project.labels.values_list("color", flat=True)
    used = {c.lower() for c in used}
    for color in DEFAULT_LABEL_COLORS:
        if color not in used:
            return color
    return DEFAULT_LABEL_COLORS[len(used) % len(DEFAULT_LABEL_COLORS)]


def get_or_create_label(project, name: str):
    """The project's label with this (already cleaned) name, created if needed.

    Imports create labels as they meet them; two imports racing for the same
    new name both end up with the one label.
    """
    from projects.models import Label, name_key

    key = name_key(name)
    label = Label.objects.filter(project=project, name_key=key).first()
    if label is not None:
        return label
    try:
        with transaction.atomic():
            return Label.objects.create(
                project=project, name=name, color=next_label_color(project)
            )
    except IntegrityError:
        return Label.objects.get(project=project, name_key=key)
