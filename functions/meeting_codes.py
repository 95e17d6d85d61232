"""Meeting codes (docs/firestore.md): the canonical form we store, the form Reports filters on, and
what a declaration may name."""

from __future__ import annotations

import functools
import re
from typing import Final

__all__ = ["canonical_meeting_code", "declared_meeting_code", "reports_meeting_code"]

_SEPARATORS: Final = re.compile(r"[\s\-]+")
_TEN_LETTERS: Final = re.compile(r"[a-z]{10}")
_DECLARED_CHARACTERS: Final = re.compile(r"[A-Za-z0-9 -]+")


@functools.lru_cache(maxsize=4096)
def canonical_meeting_code(raw: str) -> str:
    """``ABCDEFGHIJ``, `` Abc defg-HIJ`` → ``abc-defg-hij``.

    Codes that are not ten letters are lower-cased with dashes and spaces removed.
    """
    compact = _SEPARATORS.sub("", raw).lower()
    if _TEN_LETTERS.fullmatch(compact):
        return f"{compact[:3]}-{compact[3:7]}-{compact[7:]}"
    return compact


def reports_meeting_code(code: str) -> str:
    """The form the Reports API stores and filters on: ``ABCDEFGHIJ``."""
    return _SEPARATORS.sub("", code).upper()


def declared_meeting_code(raw: str) -> str:
    """The canonical code of a declaration (webhook, CLI); ValueError saying why it is none.

    Letters, digits, dashes and spaces only, 3 to 64 characters once canonical.
    """
    if not _DECLARED_CHARACTERS.fullmatch(raw):
        raise ValueError("may hold only letters, digits, dashes and spaces")
    code = canonical_meeting_code(raw)
    if not 3 <= len(code) <= 64:
        raise ValueError("must have 3 to 64 characters without spaces")
    return code
