"""Neutralising peer-controlled text before it reaches a terminal or an LLM.

Everything another agent can set (names, topics, messages, file names, reasons)
passes through here at the boundary.
"""

from __future__ import annotations

import re
import unicodedata

# CSI/OSC/other escape sequences, then any remaining C0/C1 control except tab and newline.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Bidi overrides/isolates and zero-width characters that can disguise text.
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff\u00ad]")


def clean_text(text: str) -> str:
    """Remove terminal escapes, control characters and invisible formatting; keep newlines."""
    text = _ESCAPES.sub("", text)
    text = _CONTROLS.sub("", text)
    return _INVISIBLE.sub("", text)


def clean_label(text: str, limit: int) -> str:
    """A one-line label: cleaned, whitespace folded, cut to ``limit`` characters."""
    folded = " ".join(clean_text(text).split())
    return folded[:limit]


# Letters from other scripts that render like Latin ones, and digits that pass for
# letters: a small subset of Unicode's confusables (UTS #39) covering what matters in names.
_CONFUSABLES = str.maketrans(
    {
        **dict.fromkeys("аɑα", "a"),
        "в": "b",
        **dict.fromkeys("сϲ", "c"),
        "ԁ": "d",
        **dict.fromkeys("еε", "e"),
        "ɡ": "g",
        **dict.fromkeys("һ", "h"),
        **dict.fromkeys("іιı1|", "l"),
        "ј": "j",
        **dict.fromkeys("кκ", "k"),
        **dict.fromkeys("м", "m"),
        **dict.fromkeys("пη", "n"),
        **dict.fromkeys("оοσ0", "o"),
        **dict.fromkeys("рρ", "p"),
        "ԛ": "q",
        "г": "r",
        "ѕ": "s",
        **dict.fromkeys("тτ", "t"),
        **dict.fromkeys("υ", "u"),
        **dict.fromkeys("νѵ", "v"),
        **dict.fromkeys("ԝω", "w"),
        **dict.fromkeys("хχ", "x"),
        **dict.fromkeys("уγ", "y"),
        "ᴢ": "z",
        "i": "l",
    }
)


def skeleton(name: str) -> str:
    """A comparison key under which look-alike names collide: case, width, accents,
    invisible characters, and common cross-script look-alikes."""
    decomposed = unicodedata.normalize("NFKD", clean_label(name, 256)).casefold()
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return plain.translate(_CONFUSABLES).replace("rn", "m").replace(" ", "")
