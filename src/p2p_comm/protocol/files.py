"""Received file names: turning a peer's chosen name into a safe one inside our folder."""

from __future__ import annotations

import re
import unicodedata

from ..sanitize import clean_label

MAX_STEM = 120
_WINDOWS_RESERVED = re.compile(r"(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?", re.IGNORECASE)
_UNSAFE = re.compile(r"[^\w.\- ()+,=@]")


def safe_file_name(name: str) -> str:
    """A plain file name with no directory part, not hidden, not reserved, bounded in length."""
    base = re.split(r"[/\\]", clean_label(name, 1024))[-1]
    base = unicodedata.normalize("NFC", base)
    base = _UNSAFE.sub("_", base).strip(" .")
    base = base.lstrip(".-")  # no hidden files, nothing that reads as an option
    if not base:
        base = "file"
    if _WINDOWS_RESERVED.fullmatch(base):
        base = "_" + base
    stem, dot, ext = base.rpartition(".")
    if not dot:
        return base[:MAX_STEM]
    return f"{stem[:MAX_STEM]}.{ext[:16]}"


def numbered(name: str, number: int) -> str:
    """``report.pdf`` -> ``report-2.pdf``: the name to try when ``name`` is taken."""
    stem, dot, ext = name.rpartition(".")
    return f"{stem}-{number}.{ext}" if dot and stem else f"{name}-{number}"
