"""The one rule for label names, wherever a label is created or renamed.

The labeling pages and API, the upload form, the import pipeline (labels from
zip folders) and the manifest import all clean names here, so a label can
always be written as one folder of a class-folder export and two labels never
differ by whitespace alone.
"""

from __future__ import annotations

import unicodedata

from django.core.exceptions import ValidationError

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
