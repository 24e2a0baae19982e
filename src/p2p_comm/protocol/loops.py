"""Runaway-loop protection: a per-call message budget and ping-pong detection (sans-IO).

Two agents that answer each other automatically can go on forever and burn tokens. Each
daemon watches every message of a call, in both directions, and trips when the call goes
over its budget (messages per minute, or total messages) or when the participants keep
exchanging near-identical messages, which catches a ping-pong long before the budget.
Once tripped, our own sends in that call are refused until lifted (`p2p send --force`).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

# Two messages whose normalised forms are at least this similar count as "the same again".
SIMILARITY = 0.9
_DIGITS = re.compile(r"\d+")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class LoopBudget:
    """Per call; 0 turns a check off (config keys loop_turns_per_minute, loop_max_turns,
    loop_repeats). A turn is a message whose author is not the author of the message
    before it: a burst from one side is one turn, a back-and-forth is many."""

    per_minute: int = 20
    max_turns: int = 200
    repeats: int = 3


def normalise(text: str) -> str:
    """What a loop repeats: counters and whitespace vary, the rest does not."""
    return _SPACE.sub(" ", _DIGITS.sub("#", text.casefold())).strip()[:2000]


def similar(a: str, b: str) -> bool:
    if a == b:
        return True
    from difflib import SequenceMatcher  # imported when first needed: memory (issue 20)

    matcher = SequenceMatcher(None, a, b, autojunk=False)
    return matcher.real_quick_ratio() >= SIMILARITY and matcher.ratio() >= SIMILARITY


@dataclass
class LoopGuard:
    """The watch over one call."""

    budget: LoopBudget
    times: deque[float] = field(default_factory=deque)
    turns: int = 0
    speaker: str = ""  # author of the last message
    last: dict[str, str] = field(default_factory=dict)  # author -> last normalised text
    streak: dict[str, int] = field(default_factory=dict)  # author -> turns that repeated
    tripped: str = ""  # why sends are refused; "" while they are not

    def observe(self, author: str, text: str, now: float) -> str | None:
        """Count one message by ``author``; the reason if this one trips the guard.

        A ping-pong needs alternation: an author's streak grows only when a new turn of
        theirs (someone else spoke in between) opens with what they said last time. Similar
        lines within one burst (numbered steps, a list) are one turn and count once; a line
        in a turn that differs from the one before it ends the author's streak."""
        new_turn = author != self.speaker
        if new_turn:
            self.speaker = author
            self.turns += 1
            self.times.append(now)
        while self.times and self.times[0] <= now - 60.0:
            self.times.popleft()
        norm = normalise(text)
        previous = self.last.get(author)
        repeated = previous is not None and similar(previous, norm)
        if not repeated:
            self.streak[author] = 0
        elif new_turn:
            self.streak[author] = self.streak.get(author, 0) + 1
        self.last[author] = norm
        if self.tripped:
            return None
        reason = self._verdict()
        if reason:
            self.tripped = reason
        return reason or None

    def _verdict(self) -> str:
        budget = self.budget
        if budget.repeats:
            looping = [a for a, n in self.streak.items() if n >= budget.repeats]
            if len(looping) >= 2:
                return (
                    f"the participants exchanged near-identical messages in "
                    f"{budget.repeats + 1} alternating turns each (a ping-pong)"
                )
        if budget.per_minute and len(self.times) > budget.per_minute:
            return f"more than {budget.per_minute} turns in a minute"
        if budget.max_turns and self.turns > budget.max_turns:
            return f"more than {budget.max_turns} turns in this call"
        return ""

    def lift(self) -> None:
        """A human or the agent decided the call may go on: start counting afresh."""
        self.tripped = ""
        self.times.clear()
        self.turns = 0
        self.speaker = ""
        self.streak.clear()
        self.last.clear()
