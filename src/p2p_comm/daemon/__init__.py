"""The asyncio daemon: socket server, relay I/O through nostr-sdk, scheduling."""
