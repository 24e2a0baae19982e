"""Nostr specifics, one small module per NIP, on nostr-sdk's primitives.

The daemon side only: every module here imports ``nostr_sdk`` (about 0.2 s and 30 MB), so
the thin CLI must never import this package. ``kinds`` alone is free of the SDK.
"""
