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
    config = load_config(tmp_path / "none.toml", environ={"P2P_LIVENESS_WINDOW": "7"})
    assert config.effective_liveness_window == 7


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
