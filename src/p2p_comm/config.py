"""Configuration: built-in defaults, then ``<home>/p2p-config.toml``, then ``P2P_*`` variables."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

DEFAULT_RELAYS = ("wss://relay.damus.io", "wss://nos.lol", "wss://relay.primal.net")


class ConfigError(Exception):
    """The configuration file or an environment variable holds a value we cannot use."""


@dataclass(frozen=True)
class Config:
    """Every setting the daemon reads. Field names are the TOML keys."""

    relays: tuple[str, ...] = DEFAULT_RELAYS
    name: str = ""
    description: str = ""
    capabilities: tuple[str, ...] = ()
    owner: str = ""
    announce_interval: float = 120.0
    # About 2.5 announce intervals, unless set explicitly.
    liveness_window: float = 0.0
    ring_timeout: float = 60.0
    max_message_bytes: int = 256 * 1024
    max_file_bytes: int = 10 * 1024 * 1024
    log_level: str = "INFO"
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def effective_liveness_window(self) -> float:
        return self.liveness_window or self.announce_interval * 2.5


# Environment variable -> field. Lists are comma-separated.
ENV_VARS = {
    "P2P_RELAYS": "relays",
    "P2P_NAME": "name",
    "P2P_DESCRIPTION": "description",
    "P2P_CAPABILITIES": "capabilities",
    "P2P_OWNER": "owner",
    "P2P_ANNOUNCE_INTERVAL": "announce_interval",
    "P2P_LIVENESS_WINDOW": "liveness_window",
    "P2P_RING_TIMEOUT": "ring_timeout",
    "P2P_MAX_MESSAGE_BYTES": "max_message_bytes",
    "P2P_MAX_FILE_BYTES": "max_file_bytes",
    "P2P_LOG_LEVEL": "log_level",
}

_FIELD_TYPES = {f.name: f.type for f in fields(Config)}


def _coerce(key: str, value: Any, source: str) -> Any:
    kind = _FIELD_TYPES[key]
    try:
        if kind == "tuple[str, ...]":
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(item).strip() for item in items if str(item).strip())
        if kind == "float":
            number = float(value)
            if number < 0:
                raise ValueError
            return number
        if kind == "int":
            number = int(value)
            if number <= 0:
                raise ValueError
            return number
        if not isinstance(value, str):
            raise ValueError
        return value.strip()
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: '{key}' has an unusable value {value!r}.") from None


def _validate_relays(relays: tuple[str, ...], source: str) -> None:
    if not relays:
        raise ConfigError(f"{source}: at least one relay is needed.")
    for url in relays:
        if not url.startswith(("ws://", "wss://")):
            raise ConfigError(f"{source}: relay {url!r} must start with ws:// or wss://.")


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read defaults, then the TOML file if present, then environment overrides."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        for key, value in raw.items():
            if key in _FIELD_TYPES and key != "extra":
                values[key] = _coerce(key, value, str(path))
            else:
                extra[key] = value
    for var, key in ENV_VARS.items():
        if var in environ and environ[var].strip():
            values[key] = _coerce(key, environ[var], var)
    config = replace(Config(), **values, extra=extra)
    _validate_relays(config.relays, "relays")
    return config
