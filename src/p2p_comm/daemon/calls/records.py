"""What the agent reads about calls: descriptions, transcripts (Markdown and JSON files)."""

from __future__ import annotations

import os
from typing import Any

from ...atomicfile import replace_file
from ...paths import HomePaths, ensure_private_dir
from ...protocol.call import Call
from ...schema import peer
from ...store import Store
from ...transcripts import render_json, render_markdown
from ..relays.directory import npub_of
from ..relays.outbound import Outbound


class Records:
    """Describes calls and writes their transcripts."""

    def __init__(
        self,
        paths: HomePaths,
        store: Store,
        outbound: Outbound,
        me: tuple[str, str] = ("", ""),
        keep: bool = True,
    ) -> None:
        self.paths = paths
        self.store = store
        self.outbound = outbound
        self.me = me  # (name, npub)
        self.keep = keep  # config `keep_transcripts`: no transcript files when false
        # Calls whose peer is named only by its own claim: it announced no presence.
        self.unverified: set[str] = set()

    def describe(self, call: Call, peer_name: str) -> dict[str, Any]:
        """The call object of schema ``p2p-comm/2`` (``call.json``)."""
        return {
            "call_id": call.id,
            "group": False,
            "peer": peer(npub_of(call.peer), peer_name, call.id not in self.unverified),
            "direction": str(call.direction),
            "topic": call.topic,
            "state": str(call.state),
            "outcome": str(call.outcome),
            "end_reason": call.end_reason,
            "created_at": call.created_at,
            "answered_at": call.answered_at,
            "ended_at": call.ended_at,
            "me": peer(self.me[1], self.me[0]),
            "unacked": call.unacked,
            "delivery": self.outbound.delivery(call),
            "forward_secrecy": call.forward_secrecy,
        }

    def transcript(self, call: Call, peer_name: str) -> tuple[str, dict[str, Any]]:
        """The Markdown rendering, and the record: ``call``, ``entries``, ``transcript_path``."""
        info = self.describe(call, peer_name)
        entries = self.store.entries(call.id)
        path = str(self.paths.transcripts / f"{call.id}.md")
        return render_markdown(info, entries), {
            "call": info,
            "entries": entries,
            "transcript_path": path,
        }

    def write_transcript(self, call: Call, peer_names: dict[str, str]) -> None:
        """Both renderings under the home's transcripts folder, each replaced atomically
        (none with ``keep_transcripts`` false)."""
        if not self.keep:
            return
        markdown, document = self.transcript(call, peer_names.get(call.id, ""))
        self.write_files(call.id, markdown, render_json(document["call"], document["entries"]))

    def write_files(self, call_id: str, markdown: str, json_text: str) -> None:
        """A transcript's two files, each replaced atomically."""
        if not self.keep:
            return
        folder = self.paths.transcripts
        ensure_private_dir(folder)
        for suffix, text in ((".md", markdown), (".json", json_text)):
            target = folder / f"{call_id}{suffix}"
            # No fixed temporary name that a planted symlink could redirect.
            replace_file(os.fspath(target), text.encode("utf-8"), 0o600)
