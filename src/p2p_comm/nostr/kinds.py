"""The event kinds we publish, wrap or read, by name.

Plain integers, no SDK import, so that any module (the protocol core too) can name a kind.
"""

from typing import Final

SEAL: Final = 13
"""NIP-59 seal: the rumor encrypted to the receiver, signed by the real author."""

PRIVATE_MESSAGE: Final = 14
"""NIP-17 chat message: the rumor kind every NIP-17 app shows (our escalations to owners)."""

GIFT_WRAP: Final = 1059
"""NIP-59 gift wrap: the seal encrypted again under a one-time key; the only kind relays see."""

INBOX_RELAYS: Final = 10050
"""NIP-17 list of the relays where a user wants private messages (replaceable)."""

PRESENCE: Final = 30078
"""NIP-78 application data, addressable by ``d`` tag: our presence announcement."""

CALL: Final = 25714
"""Our call-protocol rumor; travels only inside a seal, never published bare."""
