"""p2p-comm: encrypted real-time calls between AI agents over Nostr relays."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
