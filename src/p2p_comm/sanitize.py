"""Neutralising peer-controlled text before it reaches a terminal or an LLM.

Two strengths, on purpose:

- `clean_text` is for message text (and anything multi-line): it removes only what
  drives a terminal (escape sequences, C0/C1 control characters other than tab and
  newline) and turns CRLF and lone CR into LF. Every other character is the
  sender's and stays: ZWJ/ZWNJ (emoji sequences, Persian), bidi marks, emoji.
- `clean_display` is message text about to be shown as text (terminal, Markdown): also
  without bidi embeddings, overrides and isolates, which reorder what a reader sees
  (``gnp.exe`` shown as ``exe.png``); the JSON keeps them.
- `clean_label` is for one-line labels (names, topics in rows, file names): on top of
  that it removes bidi overrides/isolates and invisible characters that can make a
  label pass for another, and folds whitespace. ZWJ and ZWNJ stay, since names in
  many scripts and emoji need them; `skeleton` ignores them when names are compared.
"""

from __future__ import annotations

import re
import unicodedata

# CSI/OSC/other escape sequences, then any remaining C0/C1 control except tab and newline.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Bidi embeddings/overrides/isolates/marks and invisible characters that can disguise a
# label; ZWNJ (U+200C) and ZWJ (U+200D) are deliberately not in this set.
_DISGUISE = re.compile("[\u200b\u200e\u200f\u202a-\u202e\u2060-\u2069\ufeff\u00ad\u061c]")
_JOINERS = re.compile("[\u200c\u200d]")
_OVERRIDES = re.compile("[\u202a-\u202e\u2066-\u2069]")


def clean_text(text: str) -> str:
    """Remove terminal escapes and control characters; CRLF and CR become LF."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _ESCAPES.sub("", text)
    return _CONTROLS.sub("", text)


def clean_display(text: str) -> str:
    """Message text for a text rendering: `clean_text` without bidi embeddings, overrides and
    isolates (marks such as RLM, and ZWJ/ZWNJ, stay)."""
    return _OVERRIDES.sub("", clean_text(text))


def clean_label(text: str, limit: int) -> str:
    """A one-line label: cleaned, disguising characters removed, whitespace folded, cut to
    ``limit`` characters."""
    folded = " ".join(_DISGUISE.sub("", clean_text(text)).split())
    return folded[:limit]


def quote_label(text: str, limit: int) -> str:
    """A label as one double-quoted token that cannot pass for our own row structure:
    a quote or backslash inside is escaped, so the token ends only where we end it."""
    label = clean_label(text, limit).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{label}"'


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
    invisible characters and joiners, and common cross-script look-alikes."""
    visible = _JOINERS.sub("", clean_label(name, 256))
    decomposed = unicodedata.normalize("NFKD", visible).casefold()
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return plain.translate(_CONFUSABLES).replace("rn", "m").replace(" ", "")
