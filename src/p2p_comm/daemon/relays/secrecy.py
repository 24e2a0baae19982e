"""Forward secrecy for calls: each call's ratchet session, kept in step with the store.

The cryptography is `protocol/ratchet.py`; this part says when it is used
(docs/PROTOCOL.md 3.12.7): our `request` carries our ephemeral key, our `accept` too when
the caller gave one; from then on every message of ours that carries content travels as a
ratchet seal (`nip59.wrap_ratchet`), encrypted once, when it is queued, and kept in the
outbox as ciphertext. A session's state is written in the transaction that changed it
(queueing a message, or taking an inbound batch) and erased from memory and the database
when the call ends: after that nothing in the home decrypts a wrap of the call.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace

from ...nostr import kinds, nip59
from ...protocol import ratchet
from ...protocol.call import ENDED, OUTGOING, Call
from ...protocol.wire import WireMessage
from ...store import Store
from .prekeys import Prekeys

log = logging.getLogger("p2p.secrecy")

# What a peer that set up the ratchet must send under it: every type that carries content.
# `request`, `accept`, `reject` and a caller's `end` before the accept come before the
# ratchet exists; bare receipts carry a number only (docs/PROTOCOL.md 3.12.7).
RATCHETED_TYPES = frozenset({"message", "file", "escalation", "refuse", "roster", "frag"})


class Secrecy:
    """The ratchet sessions of our calls, by call id.

    ``prekeys``: ours, to read a request encrypted to one; ``peer_prekey``: the prekey a
    callee announces in a live presence (raw bytes), if any, for our requests."""

    def __init__(
        self,
        store: Store,
        me: str,
        prekeys: Prekeys | None = None,
        peer_prekey: Callable[[str], bytes | None] | None = None,
    ) -> None:
        self.store = store
        self.me = me
        self.prekeys = prekeys
        self.peer_prekey = peer_prekey
        self.sessions: dict[str, ratchet.Session] = {}
        self._dirty: set[str] = set()
        # Sessions set up from our prekey by a request just read: written only once the
        # request has made a call (a refused one leaves nothing behind).
        self._fresh: set[str] = set()
        # Per call, the keys of messages read and not yet taken (with when they were read):
        # a state written meanwhile (we send in that call) keeps them as skipped keys, so
        # a crash before those messages are taken still reads their re-sends.
        self._unread: dict[str, dict[tuple[bytes, int], tuple[bytes, float]]] = {}

    def load(self) -> None:
        """Every session as saved (after a restart, or a failed transaction)."""
        self.sessions, self._dirty, self._fresh, self._unread = {}, set(), set(), {}
        for call_id, state in self.store.ratchets():
            try:
                self.sessions[call_id] = ratchet.Session.from_dict(state)
            except (KeyError, TypeError, ValueError) as exc:
                log.error("call %s has an unreadable ratchet state (%s); left out", call_id, exc)

    # Set-up ---------------------------------------------------------------------------

    def on_transmit(self, call: Call, message: WireMessage) -> WireMessage:
        """Our `request` and `accept` with our ephemeral key (a new session for the call);
        in a group's session made from a roster, the initiator's first message, whatever
        it is (docs/PROTOCOL.md 3.12.8)."""
        in_band = call.in_band_keys and call.direction == OUTGOING and message.seq == 1
        if in_band and call.id not in self.sessions:
            session, request = ratchet.initiator_session(
                call.id, self.me, call.peer, ratchet.new_key()
            )
            self._keep(call.id, session)
            call.ratchet_started()
            return replace(message, body={**message.body, **request.to_dict()})
        if message.type == "request" and call.direction == OUTGOING and message.seq == 1:
            # To the callee's signed prekey when it announces one: the request itself
            # then goes under the ratchet (docs/PROTOCOL.md 3.12.2).
            prekey = self.peer_prekey(call.peer) if self.peer_prekey else None
            session, request = ratchet.initiator_session(
                call.id, self.me, call.peer, ratchet.new_key(), prekey
            )
            self._keep(call.id, session)
            if prekey is not None:
                call.sealed_to_prekey(prekey.hex())
            return replace(message, body={**message.body, **request.to_dict()})
        if message.type == "accept" and call.forward_secrecy:
            made = self.sessions.get(call.id)
            if made is not None and made.role == "responder" and made.dhs_pub is not None:
                # Set up when the request, encrypted to our prekey, was read: its first
                # ratchet key is the one the accept carries.
                accept = ratchet.AcceptKeys(made.dhs_pub)
            else:
                keys = ratchet.RequestKeys.from_dict({"ek": call.peer_ek})
                made, accept = ratchet.responder_session(
                    call.id, call.peer, self.me, keys, ratchet.new_key()
                )
            self._keep(call.id, made)
            return replace(message, body={**message.body, **accept.to_dict()})
        return message

    def responded(self, call: Call, message: WireMessage) -> bool:
        """In a session made from a roster, the initiator's first message brought its key:
        our side of the set-up, with a key of our own; we can send under it at once.
        Whether it was set up now."""
        if call.id in self.sessions or not call.in_band_keys or "ek" not in message.body:
            return False
        try:
            keys = ratchet.RequestKeys.from_dict({"ek": message.body["ek"]})
            session, _ = ratchet.responder_session(
                call.id, call.peer, self.me, keys, ratchet.new_key()
            )
        except (ratchet.RatchetError, ValueError) as exc:
            log.warning("call %s: unusable key in the first message: %s", call.id[:8], exc)
            return False
        self._keep(call.id, session)
        call.ratchet_started()
        return True

    def accepted(self, call: Call, message: WireMessage) -> None:
        """The callee's accept reached us, the caller: its key starts our receiving side."""
        session = self.sessions.get(call.id)
        if session is None or "ek" not in message.body:
            return
        try:
            session.accepted(ratchet.AcceptKeys.from_dict(message.body))
        except (ratchet.RatchetError, ValueError) as exc:
            log.warning("call %s: unusable key in the accept: %s", call.id[:8], exc)
            return
        self._keep(call.id, session)

    # Sending --------------------------------------------------------------------------

    def seal(self, call: Call, content: str, rumor_at: int) -> str | None:
        """The ratchet ciphertext (base64) of our rumor carrying ``content``, for a call
        under the ratchet; None otherwise (the message goes sealed with NIP-44, as before).
        The session's new state is written in the current transaction."""
        if not (call.forward_secrecy or _to_prekey(call)):
            return None
        session = self.sessions.get(call.id)
        if session is None or not session.can_send:
            return None
        rumor = nip59.make_rumor(self.me, kinds.CALL, content, rumor_at)
        data = session.encrypt(rumor.to_json().encode())
        self._keep(call.id, session)
        return base64.b64encode(data).decode("ascii")

    def seal_now(self, call: Call, content: str, rumor_at: int) -> str | None:
        """`seal` in a transaction of its own (pieces of a message cut at publication)."""
        if not (call.forward_secrecy or _to_prekey(call)):
            return None
        with self.store.transaction():
            return self.seal(call, content, rumor_at)

    # Receiving ------------------------------------------------------------------------

    def open(
        self,
        call_id: str,
        sender: str,
        content: str,
        now: float,
        max_skip: int | None = None,
        prekey: str | None = None,
    ) -> str:
        """The rumor's JSON from a ratchet seal of ``sender`` for ``call_id``;
        `ratchet.RatchetError` (or its kinds) if it cannot be read. The session's new state
        waits in memory for `flush`, in the transaction that takes the message. A seal
        naming our ``prekey`` for a call we have no session of is a request encrypted to
        it: our side is set up from it first (docs/PROTOCOL.md 3.12.2).

        ``max_skip``: refuse (`ratchet.TooFarAhead`, session untouched) a message that
        would make us skip more keys than this: the live path reads only what comes about
        in order, and leaves the rest to a catch-up that reads it sorted (`header_n`), so a
        backlog read in the relay's order never overflows the skipped keys."""
        try:
            data = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise ratchet.RatchetError("a ratchet seal that is not base64") from None
        session = self.sessions.get(call_id)
        fresh = session is None and prekey is not None
        if session is None:
            if prekey is None:
                raise ratchet.MessageKeyGone("no ratchet state for this call (ended or unknown)")
            session = self._from_prekey(call_id, sender, prekey, data)
        peer = session.responder if session.role == "initiator" else session.initiator
        if sender != peer:
            raise ratchet.RatchetError("a ratchet seal from a key not in the call")
        if max_skip is not None and _skips(session, data) > max_skip:
            raise ratchet.TooFarAhead("read later, in order")
        plaintext = session.decrypt(data, now=now)
        if session.last_read is not None:
            slot, key = session.last_read
            self._unread.setdefault(call_id, {})[slot] = (key, now)
            session.last_read = None
        if fresh:
            self.sessions[call_id] = session
            self._fresh.add(call_id)
        log.debug("call %s: read ratchet message n=%s", call_id[:8], session.nr - 1)
        self._dirty.add(call_id)
        try:
            return plaintext.decode()
        except UnicodeDecodeError:
            raise ratchet.RatchetError("a ratchet message that is not UTF-8") from None

    def _from_prekey(self, call_id: str, sender: str, prekey: str, data: bytes) -> ratchet.Session:
        """Our side of a call whose request was encrypted to our ``prekey`` (the caller's
        ephemeral key is the ratchet key in the message's header)."""
        private = self.prekeys.private(prekey) if self.prekeys is not None else None
        if private is None:
            raise ratchet.RatchetError("a request to a prekey we do not hold (erased, or never)")
        header, _ = ratchet.split_message(data)
        keys = ratchet.RequestKeys(header.dh, bytes.fromhex(prekey))
        session, _ = ratchet.responder_session(
            call_id, sender, self.me, keys, ratchet.new_key(), private
        )
        return session

    def opener(
        self, now: float, max_skip: int | None = None, calls: Mapping[str, Call] | None = None
    ) -> nip59.Opener:
        """How `nip59.open_seal` reads a ratchet seal. ``calls``: the calls we have; a seal
        naming our prekey sets a session up only for a call id none of them has (a request
        that rings a new call), never beside or instead of a call's own."""

        def read(sealed: nip59.Sealed) -> str:
            assert sealed.call is not None  # open_seal asks only for ratchet seals
            prekey = sealed.prekey
            if prekey is not None and calls is not None and sealed.call in calls:
                prekey = None
            return self.open(sealed.call, sealed.sender, sealed.content, now, max_skip, prekey)

        return read

    def flush(self, busy: set[str] | None = None, calls: Mapping[str, Call] | None = None) -> None:
        """Write the sessions inbound messages advanced (inside the caller's transaction),
        but not those of ``busy`` calls: messages of theirs were read and are not taken yet,
        so a crash now must leave the state that reads them again (what was taken meanwhile
        is then read twice and dropped as a duplicate `seq`).

        A session set up from our prekey is kept only if its request made a call that goes
        on (``calls``): a request turned away, or read again after its call ended, leaves
        no key behind."""
        fresh, self._fresh = self._fresh, set()
        for call_id in fresh:
            if busy and call_id in busy:
                self._fresh.add(call_id)  # its request is read and not taken yet: wait
                continue
            call = calls.get(call_id) if calls is not None else None
            session = self.sessions.get(call_id)
            if (
                call is None
                or call.state == ENDED
                or session is None
                or call.peer != session.initiator
            ):
                self.sessions.pop(call_id, None)
                self._dirty.discard(call_id)
            else:
                self._dirty.add(call_id)
        for call_id in [c for c in self._unread if not busy or c not in busy]:
            # Every message read in this call is taken (or dropped): its keys go, and a
            # state written meanwhile with them is written again without.
            del self._unread[call_id]
            if call_id in self.sessions:
                self._dirty.add(call_id)
        waiting = self._dirty & busy if busy else set()
        dirty, self._dirty = self._dirty - waiting, waiting
        for call_id in dirty:
            session = self.sessions.get(call_id)
            if session is not None:
                self.store.save_ratchet(call_id, session.to_dict())

    # Erasure --------------------------------------------------------------------------

    def forget(self, call_id: str) -> None:
        """The call ended: its keys go, from memory and (in the caller's transaction) the
        database, whose deleted pages SQLite overwrites (``secure_delete``)."""
        if self.sessions.pop(call_id, None) is not None:
            self.store.drop_ratchet(call_id)
        self._dirty.discard(call_id)
        self._unread.pop(call_id, None)

    def _keep(self, call_id: str, session: ratchet.Session) -> None:
        self.sessions[call_id] = session
        self._dirty.discard(call_id)
        self.store.save_ratchet(call_id, session.to_dict(self._unread.get(call_id)))


def _to_prekey(call: Call) -> bool:
    """Our request in a call we placed to the callee's prekey (and anything we send before
    the accept): sealed under the ratchet already."""
    return bool(call.prekey) and call.direction == OUTGOING


def header_n(content: str) -> int:
    """The message number in a ratchet seal's header (0 if it has none): what a catch-up
    sorts by before reading."""
    try:
        data = base64.b64decode(content[: 4 * -(-ratchet.HEADER_BYTES // 3)] + "==")
        return ratchet.Header.decode(data[: ratchet.HEADER_BYTES]).n
    except (binascii.Error, ValueError):
        return 0


def _skips(session: ratchet.Session, data: bytes) -> int:
    """How many message keys reading ``data`` would make ``session`` skip (an estimate
    from the header alone; 0 for a key it holds or a duplicate)."""
    try:
        header = ratchet.Header.decode(data[: ratchet.HEADER_BYTES])
    except ratchet.RatchetError:
        return 0
    if (header.dh, header.n) in session.skipped or header.dh in session.old_dhr:
        return 0
    if header.dh == session.dhr:
        return max(0, header.n - session.nr)
    previous = max(0, header.pn - session.nr) if session.ckr is not None else 0
    return header.n + previous
