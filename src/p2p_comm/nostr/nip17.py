"""NIP-17 private messages: what our owner escalations travel as, and inbox relay lists.

A kind-14 rumor in a NIP-59 gift wrap is what every NIP-17 app (0xchat, Amethyst, ...)
shows as a direct message. We build it with our own ``nip59.wrap`` rather than the SDK's
``nip17_make_private_msg`` for the same reason as call messages: the SDK backdates the
wrap up to 2 days, which relays with a ``created_at`` floor refuse.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from enum import StrEnum

import nostr_sdk as ns

from p2p_comm.nostr import kinds, nip59


class RumorClass(StrEnum):
    """What an unwrapped rumor is to us."""

    CALL = "call"
    """Our call protocol (kind 25714)."""
    PRIVATE_MESSAGE = "private_message"
    """A NIP-17 chat message (kind 14): from a human's app, e.g. an owner's reply."""
    OTHER = "other"
    """Anything else (NIP-17 file messages, reactions, ...): not for us."""


def classify(message: nip59.Unwrapped) -> RumorClass:
    """Tell a NIP-17 chat message from one of ours (and both from the rest)."""
    if message.kind == kinds.CALL:
        return RumorClass.CALL
    if message.kind == kinds.PRIVATE_MESSAGE:
        return RumorClass.PRIVATE_MESSAGE
    return RumorClass.OTHER


def private_message(
    keys: ns.Keys, receiver_hex: str, text: str, now: float | None = None, pow_bits: int = 0
) -> ns.Event:
    """A gift-wrapped kind-14 message from ``keys`` to ``receiver_hex``, readable in any
    NIP-17 app. The rumor carries the real time and the receiver's ``p`` tag (NIP-17 needs
    it to place the message in a conversation); the wrap is jittered by ``nip59``."""
    moment = time.time() if now is None else now
    rumor = nip59.make_rumor(
        keys.public_key().to_hex().lower(),
        kinds.PRIVATE_MESSAGE,
        text,
        int(moment),
        tags=[["p", receiver_hex]],
    )
    return nip59.wrap(keys, receiver_hex, rumor, nip59.wrap_timestamp(moment), pow_bits)


def inbox_relay_list(author_hex: str, relays: Iterable[str], created_at: int) -> ns.UnsignedEvent:
    """An unsigned kind-10050 list of ``relays`` (sign it, or mine it with ``nip13`` first)."""
    tags = [ns.Tag.parse(["relay", url]) for url in relays]
    return (
        ns.EventBuilder(ns.Kind(kinds.INBOX_RELAYS), "")
        .tags(tags)
        .custom_created_at(ns.Timestamp.from_secs(created_at))
        .finalize_unsigned(ns.PublicKey.parse(author_hex))
    )


def inbox_relays(tags: Iterable[Iterable[str]]) -> list[str]:
    """The relay URLs of a kind-10050 event's tags, in order, without duplicates.

    Only ``ws://``/``wss://`` URLs count: the list comes from anyone's event.
    """
    found: list[str] = []
    for tag in tags:
        fields = list(tag)
        if len(fields) < 2 or fields[0] != "relay":
            continue
        url = fields[1].strip()
        if url.startswith(("wss://", "ws://")) and len(url) <= 512 and url not in found:
            found.append(url)
    return found
