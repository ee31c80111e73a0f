"""Reading the ids of images, labels, projects... that people send.

An id is a plain whole number a database column can hold: ASCII digits only
(str.isdigit() also accepts "²" and other Unicode digits, which int() refuses)
and no more than 2**63 - 1 (SQLite overflows on larger numbers instead of
finding nothing).
"""

from collections.abc import Iterable

from django.core.exceptions import ValidationError

MAX_ID = 2**63 - 1
_MAX_DIGITS = len(str(MAX_ID))
# How much of a bad value an error message repeats.
_SHOWN_CHARS = 24
_SHOWN_VALUES = 5


def parse_id(value) -> int | None:
    """The id `value` stands for, or None when it is not a valid id."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 1 <= value <= MAX_ID else None
    if not isinstance(value, str):
        return None

    text = value.strip()
    if not text.isascii() or not text.isdigit():
        return None
    # Checked before int(): Python refuses to convert very long digit strings.
    if len(text.lstrip("0")) > _MAX_DIGITS:
        return None
    number = int(text)
    return number if 1 <= number <= MAX_ID else None


def parse_ids(values: Iterable, *, noun: str = "image") -> list[int]:
    """Every value as an id, in order; a ValidationError names the bad ones."""
    values = list(values)
    ids = [parse_id(value) for value in values]
    bad = [value for value, number in zip(values, ids, strict=True) if number is None]
    if bad:
        raise ValidationError(
            f"Not a valid {noun} id: {_shown(bad)}. An id is a whole number "
            f"from 1 to {MAX_ID}."
        )
    return ids


def _shown(values: list) -> str:
    shown = []
    for value in values[:_SHOWN_VALUES]:
        text = str(value)
        if len(text) > _SHOWN_CHARS:
            text = text[:_SHOWN_CHARS] + "…"
        shown.append(f"“{text}”")
    more = len(values) - _SHOWN_VALUES
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")
