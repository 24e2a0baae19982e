"""The named kinds agree with the numbers the rest of the code still spells out."""

import nostr_sdk as ns

from p2p_comm.nostr import kinds
from p2p_comm.protocol import presence, wire


def test_kinds_match_the_specs_and_the_sdk() -> None:
    assert kinds.SEAL == ns.Kind(13).as_u16() == 13
    assert kinds.PRIVATE_MESSAGE == 14
    assert kinds.GIFT_WRAP == 1059
    assert kinds.INBOX_RELAYS == 10050
    assert kinds.PRESENCE == 30078
    assert 30000 <= kinds.PRESENCE < 40000  # addressable: the latest per (author, d) is kept
    assert 10000 <= kinds.INBOX_RELAYS < 20000  # replaceable


def test_kinds_match_the_modules_that_predate_them() -> None:
    # The sans-IO protocol modules keep their own numbers (they import no SDK): no drift.
    assert kinds.CALL == wire.CALL_KIND
    assert kinds.PRESENCE == presence.PRESENCE_KIND
    assert kinds.INBOX_RELAYS == presence.INBOX_RELAYS_KIND
