from pathlib import Path

import pytest

from p2p_comm.config import DEFAULT_RELAYS, ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p2p-config.toml"
    path.write_text(text)
    return path


def test_defaults_without_file_or_env(tmp_path: Path) -> None:
    config = load_config(tmp_path / "missing.toml", environ={})
    assert config.relays == DEFAULT_RELAYS
    assert config.announce_interval == 120
    assert config.effective_liveness_window == 300


def test_file_overrides_defaults_and_env_overrides_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'name = "from-file"\nrelays = ["wss://a.example"]\nannounce_interval = 30\n'
        'capabilities = ["x", "y"]\n',
    )
    config = load_config(path, environ={"P2P_NAME": "from-env"})
    assert config.name == "from-env"
    assert config.relays == ("wss://a.example",)
    assert config.capabilities == ("x", "y")
    assert config.announce_interval == 30
    assert config.effective_liveness_window == 75


def test_env_lists_are_comma_separated(tmp_path: Path) -> None:
    config = load_config(
        tmp_path / "none.toml",
        environ={"P2P_RELAYS": "ws://127.0.0.1:1, wss://b.example ,", "P2P_CAPABILITIES": "a,b"},
    )
    assert config.relays == ("ws://127.0.0.1:1", "wss://b.example")
    assert config.capabilities == ("a", "b")


def test_explicit_liveness_window_wins(tmp_path: Path) -> None:
    config = load_config(tmp_path / "none.toml", environ={"P2P_LIVENESS_WINDOW": "700"})
    assert config.effective_liveness_window == 700


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('relays = ["http://x"]\n', "must start with ws://"),
        ('announce_interval = "soon"\n', "announce_interval"),
        ("relays = [\n", "cannot read config file"),
        ("relays = []\n", "at least one relay"),
    ],
)
def test_bad_values_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text), environ={})


def test_bad_env_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="P2P_MAX_FILE_BYTES"):
        load_config(tmp_path / "none.toml", environ={"P2P_MAX_FILE_BYTES": "-1"})


# Strict configuration (issue 12): each of these was accepted before.
@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "anounce_interval = 30\n",
            "unknown key 'anounce_interval'. Did you mean 'announce_interval'",
        ),
        ("colour = 1\n", "unknown key 'colour'.$"),
        (
            "[wake]\npreset = 'openclaw'\ndebounse = 1\n",
            r"\[wake\]: unknown key 'debounse'. Did you mean 'debounce'",
        ),
        ("[owner_channels]\nwebhok = 'http://x'\n", "Did you mean 'webhook'"),
        ("extra = {a = 1}\n", "unknown key 'extra'"),
        ('owner = "bob"\n', "'owner' must be the owner's npub"),
        ('log_level = "LOUD"\n', "'log_level' is 'LOUD'; use one of DEBUG, INFO, WARNING, ERROR"),
        ("max_file_bytes = 1e99\n", "'max_file_bytes' is 1e\\+99; it must be between 1 and"),
        ("announce_interval = 0\n", "'announce_interval' is 0; it must be between 10 and 3600"),
        ("announce_interval = 5\n", "between 10 and 3600 seconds"),
        ("liveness_window = 60\nannounce_interval = 120\n", "at least announce_interval"),
        ("ring_timeout = 0.1\n", "'ring_timeout'"),
        ("hook_timeout = 100000\n", "'hook_timeout'"),
        ("max_message_bytes = 10\n", "'max_message_bytes'"),
        ("max_ringing = true\n", "'max_ringing' has an unusable value"),
        ("max_open_calls = 2.5\n", "'max_open_calls' has an unusable value"),
        ("inbound_events_per_second = nan\n", "'inbound_events_per_second' has an unusable"),
        ("bytes_per_peer_per_minute = 1\n", "'bytes_per_peer_per_minute'"),
        ("call_requests_per_peer_per_minute = 100000\n", "between 1 and 600 per minute"),
    ],
)
def test_strict_config_names_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text), environ={})


def test_env_values_are_bounded_and_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^P2P_ANNOUNCE_INTERVAL: 'announce_interval' is 0"):
        load_config(tmp_path / "none.toml", environ={"P2P_ANNOUNCE_INTERVAL": "0"})


def test_good_owner_forms_and_level_case(tmp_path: Path) -> None:
    npub = "npub1" + "q" * 58
    assert load_config(tmp_path / "x.toml", environ={"P2P_OWNER": npub}).owner == npub
    hexkey = "ab" * 32
    assert load_config(tmp_path / "x.toml", environ={"P2P_OWNER": hexkey}).owner == hexkey
    assert load_config(tmp_path / "x.toml", environ={"P2P_LOG_LEVEL": "debug"}).log_level == "DEBUG"


def test_loopback_relays_allow_fast_timers_public_ones_do_not(tmp_path: Path) -> None:
    fast = {"P2P_ANNOUNCE_INTERVAL": "0.5", "P2P_LIVENESS_WINDOW": "2"}
    local = load_config(tmp_path / "x.toml", environ={**fast, "P2P_RELAYS": "ws://127.0.0.1:7"})
    assert local.announce_interval == 0.5
    with pytest.raises(ConfigError, match="announce_interval"):
        load_config(tmp_path / "x.toml", environ={**fast, "P2P_RELAYS": "wss://relay.example"})
    mixed = "ws://localhost:7,wss://relay.example"
    with pytest.raises(ConfigError, match="announce_interval"):
        load_config(tmp_path / "x.toml", environ={**fast, "P2P_RELAYS": mixed})


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('relays = "ws://127.0.0.1:9"\n', "relays"),
        ('inbox_relays = "ws://127.0.0.1:9"\n', "inbox_relays"),
        ('capabilities = "search"\n', "capabilities"),
        ("relays = [1]\n", "relays"),
    ],
)
def test_a_list_key_given_a_string_in_the_file_is_an_error(
    tmp_path: Path, text: str, key: str
) -> None:
    """README: a value of the wrong type is an error (issue 21, finding 5)."""
    with pytest.raises(ConfigError, match=rf"'{key}' must be a list") as caught:
        load_config(write(tmp_path, text), environ={})
    assert str(tmp_path / "p2p-config.toml") in str(caught.value)


def test_forward_secrecy_and_transcript_switches(tmp_path: Path) -> None:
    """`require_forward_secrecy` (default off) and `keep_transcripts` (default on): true or
    false in the file, the usual words in the environment, anything else an error."""
    default = load_config(tmp_path / "none.toml", environ={})
    assert (default.require_forward_secrecy, default.keep_transcripts) == (False, True)
    env = {"P2P_REQUIRE_FORWARD_SECRECY": "yes", "P2P_KEEP_TRANSCRIPTS": "off"}
    config = load_config(tmp_path / "none.toml", environ=env)
    assert (config.require_forward_secrecy, config.keep_transcripts) == (True, False)
    path = tmp_path / "p2p-config.toml"
    path.write_text("require_forward_secrecy = true\nkeep_transcripts = false\n")
    config = load_config(path, environ={})
    assert (config.require_forward_secrecy, config.keep_transcripts) == (True, False)
    with pytest.raises(ConfigError, match="require_forward_secrecy"):
        load_config(tmp_path / "none.toml", environ={"P2P_REQUIRE_FORWARD_SECRECY": "maybe"})
    path.write_text('keep_transcripts = "no"\n')
    with pytest.raises(ConfigError, match="keep_transcripts"):
        load_config(path, environ={})


def test_call_lanes_are_on_unless_switched_off(tmp_path: Path) -> None:
    """`call_lanes` (docs/PROTOCOL.md 3.13): on by default; off by the file or environment."""
    assert load_config(tmp_path / "none.toml", environ={}).call_lanes
    assert not load_config(tmp_path / "none.toml", environ={"P2P_CALL_LANES": "0"}).call_lanes
    path = tmp_path / "p2p-config.toml"
    path.write_text("call_lanes = false\n")
    assert not load_config(path, environ={}).call_lanes
