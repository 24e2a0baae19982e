"""`inbox_relays`: a DM inbox set (kind 10050) apart from the announce set (issue 11)."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2p_comm.config import ConfigError, load_config


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
