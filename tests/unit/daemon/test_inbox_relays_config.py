"""`inbox_relays`: a DM inbox set (kind 10050) apart from the announce set (issue 11)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import nostr_sdk as ns
import pytest

from p2p_comm.config import ConfigError, load_config
from p2p_comm.daemon.relays.nostr_io import RelayPool
from p2p_comm.daemon.relays.relay_watch import _verdict
from p2p_comm.textout import _relay_line, render_whoami


def test_empty_by_default_means_the_announce_relays(tmp_path: Path) -> None:
    config = load_config(tmp_path / "none.toml", environ={"P2P_RELAYS": "wss://a.example"})
    assert config.inbox_relays == ()
    assert config.effective_inbox_relays == ("wss://a.example",)
    assert config.all_relays == ("wss://a.example",)


def test_env_list_is_comma_separated_and_wins_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "p2p-config.toml"
    path.write_text('relays = ["wss://a.example"]\ninbox_relays = ["wss://file.example"]\n')
    assert load_config(path, environ={}).inbox_relays == ("wss://file.example",)
    config = load_config(
        path, environ={"P2P_INBOX_RELAYS": " wss://inbox.example , ws://127.0.0.1:9 ,"}
    )
    assert config.inbox_relays == ("wss://inbox.example", "ws://127.0.0.1:9")
    assert config.effective_inbox_relays == config.inbox_relays
    # Announce relays first, then the inbox relays we do not announce on; no duplicates.
    both = load_config(path, environ={"P2P_INBOX_RELAYS": "wss://inbox.example,wss://a.example"})
    assert both.all_relays == ("wss://a.example", "wss://inbox.example")


def test_an_empty_list_in_the_file_means_the_same_as_relays(tmp_path: Path) -> None:
    path = tmp_path / "p2p-config.toml"
    path.write_text('relays = ["wss://a.example"]\ninbox_relays = []\n')
    assert load_config(path, environ={}).effective_inbox_relays == ("wss://a.example",)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"P2P_INBOX_RELAYS": "https://inbox.example"}, "inbox_relays: relay 'https://inbox"),
        ({"P2P_INBOX_RELAYS": "inbox.example"}, "must start with ws:// or wss://"),
    ],
)
def test_validated_like_relays(tmp_path: Path, environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "none.toml", environ=environ)


def test_misspelt_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "p2p-config.toml"
    path.write_text('inbox_relay = ["wss://a.example"]\n')
    with pytest.raises(ConfigError, match="Did you mean 'inbox_relays'"):
        load_config(path, environ={})


def test_fast_timers_need_every_relay_on_loopback(tmp_path: Path) -> None:
    fast = {"P2P_ANNOUNCE_INTERVAL": "0.5", "P2P_LIVENESS_WINDOW": "2"}
    local = {**fast, "P2P_RELAYS": "ws://127.0.0.1:7", "P2P_INBOX_RELAYS": "ws://127.0.0.1:8"}
    assert load_config(tmp_path / "x.toml", environ=local).announce_interval == 0.5
    public_inbox = {**local, "P2P_INBOX_RELAYS": "wss://inbox.example"}
    with pytest.raises(ConfigError, match="announce_interval"):
        load_config(tmp_path / "x.toml", environ=public_inbox)


# Where each REQ goes, and how a relay's roles are judged and shown.


async def _pool() -> Any:
    async def handler(event: Any) -> None:
        return None

    return RelayPool(("wss://announce.example",), handler, inbox=("wss://inbox.example",))


def test_wraps_are_read_on_inbox_relays_everything_else_on_announce_relays() -> None:
    pool = asyncio.run(_pool())
    me = ns.Keys.generate().public_key()
    wraps = ns.Filter().kind(ns.Kind(1059)).pubkey(me)
    presence = ns.Filter().kind(ns.Kind(30078))
    lists = ns.Filter().kind(ns.Kind(10050)).author(me)
    assert pool.read_relays([wraps]) == ("wss://inbox.example",)
    assert pool.read_relays([presence]) == ("wss://announce.example",)
    assert pool.read_relays([lists]) == ("wss://announce.example",)
    both = ("wss://announce.example", "wss://inbox.example")
    assert pool.read_relays([wraps, presence]) == both  # mixed: everywhere
    assert pool.read_relays([ns.Filter().pubkey(me)]) == both  # no kind: everywhere
    assert pool.roles("wss://inbox.example") == ["inbox"]
    assert pool.roles("wss://announce.example") == ["announce"]
    assert pool.roles("wss://a-peers.example") == []


def _probe(roles: list[str], ok: bool = True, announce: str = "yes") -> dict[str, Any]:
    return {
        "roles": roles,
        "send": "yes",
        "receive": "yes (3 ms round trip)" if ok else "no (withholds DMs)",
        "announce": announce,
        "ok": ok,
        "problems": [],
    }


def test_doctor_judges_a_relay_on_what_we_use_it_for() -> None:
    assert _verdict(_probe(["announce", "inbox"])) == "works: sends, receives and announces"
    assert _verdict(_probe(["announce", "inbox"], ok=False)).startswith("unusable for receiving")
    # An announce relay that withholds DMs is fine: peers do not send to us there.
    announce_only = _verdict(_probe(["announce"], ok=False))
    assert announce_only.startswith("works for announcing")
    assert "does not carry DMs" in announce_only
    inbox_only = _verdict(_probe(["inbox"], announce="not used (inbox relay only)"))
    assert inbox_only.startswith("works as an inbox relay")
    refused = _verdict(_probe(["announce"], announce="no (refuses kind 30078: blocked)"))
    assert refused.startswith("others cannot discover us here")


def test_text_marks_a_relay_with_one_role_only() -> None:
    line = _relay_line({"url": "wss://x", "roles": ["inbox"], "state": "connected", "health": "ok"})
    assert line.startswith("relay wss://x (inbox): connected")
    both = {"url": "wss://x", "roles": ["announce", "inbox"], "state": "connected", "health": "ok"}
    assert _relay_line(both).startswith("relay wss://x: connected")
    ident = {"name": "bob", "npub": "npub1x", "pubkey": "ab", "relays": ["wss://a"]}
    assert not any(
        "inbox" in line for line in render_whoami({**ident, "inbox_relays": ["wss://a"]})
    )
    assert "inbox relays: wss://b" in render_whoami({**ident, "inbox_relays": ["wss://b"]})
