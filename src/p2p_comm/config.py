"""Configuration: built-in defaults, then ``<home>/p2p-config.toml``, then ``P2P_*`` variables."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

# Where gift wraps are delivered and read first (README, "Talking to other agents"): relays
# that serve kind 1059 freely come first; relay.damus.io paces writers (8/min per IP).
DEFAULT_RELAYS = ("wss://nos.lol", "wss://relay.primal.net", "wss://relay.damus.io")


class ConfigError(Exception):
    """The configuration file or an environment variable holds a value we cannot use."""


# Events that may wake the agent; `message` only wakes when no `p2p wait` is blocked.
WAKE_EVENTS = ("call_request", "message", "owner_reply", "call_ended", "call_missed")
OPENCLAW_WAKE_COMMAND = ("openclaw", "system", "event", "--mode", "now", "--text", "{text}")
OPENCLAW_WAKE_WEBHOOK = "http://127.0.0.1:18789/hooks/wake"


@dataclass(frozen=True)
class Hook:
    """Something to run on an event: a command (no shell) and/or a JSON webhook."""

    command: tuple[str, ...] = ()
    webhook: str = ""
    webhook_token: str = ""

    @property
    def configured(self) -> bool:
        return bool(self.command or self.webhook)


@dataclass(frozen=True)
class WakeConfig:
    """How the daemon wakes its agent, and on which events."""

    hook: Hook = Hook()
    events: tuple[str, ...] = WAKE_EVENTS
    debounce: float = 0.25
    min_interval: float = 2.0


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
    hook_timeout: float = 10.0
    call_policy: str = "anyone"
    call_requests_per_peer_per_minute: int = 5
    max_ringing: int = 10
    max_open_calls: int = 20
    bytes_per_peer_per_minute: int = 64 * 1024 * 1024
    inbound_events_per_second: int = 300
    owner_hook: Hook = Hook()
    wake: WakeConfig = WakeConfig()
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
    "P2P_HOOK_TIMEOUT": "hook_timeout",
    "P2P_CALL_POLICY": "call_policy",
    "P2P_CALL_REQUESTS_PER_PEER_PER_MINUTE": "call_requests_per_peer_per_minute",
    "P2P_MAX_RINGING": "max_ringing",
    "P2P_MAX_OPEN_CALLS": "max_open_calls",
    "P2P_BYTES_PER_PEER_PER_MINUTE": "bytes_per_peer_per_minute",
    "P2P_INBOUND_EVENTS_PER_SECOND": "inbound_events_per_second",
}
CALL_POLICIES = ("anyone", "contacts", "nobody")
# Tables handled by their own parsers, not by _coerce.
_TABLES = {"owner_channels", "wake", "owner_hook", "extra"}

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
            if key in _FIELD_TYPES and key not in _TABLES:
                values[key] = _coerce(key, value, str(path))
            elif key not in _TABLES:
                extra[key] = value
        owner_table = raw.get("owner_channels", {})
        wake_table = raw.get("wake", {})
    else:
        owner_table, wake_table = {}, {}
    for var, key in ENV_VARS.items():
        if var in environ and environ[var].strip():
            values[key] = _coerce(key, environ[var], var)
    values["owner_hook"] = _owner_hook(_table(owner_table, "owner_channels"), environ)
    values["wake"] = _wake(_table(wake_table, "wake"), environ)
    config = replace(Config(), **values, extra=extra)
    _validate_relays(config.relays, "relays")
    if config.call_policy not in CALL_POLICIES:
        raise ConfigError(f"call_policy must be one of {', '.join(CALL_POLICIES)}.")
    return config


def _table(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table.")
    return value


def _command(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or not value:
        raise ConfigError(f"{where} must be a non-empty list of strings (no shell is used).")
    return tuple(value)


def _url(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ConfigError(f"{where} must be an http:// or https:// URL.")
    return value


def _hook(table: dict[str, Any], env: Mapping[str, str], prefix: str, name: str) -> Hook:
    command = _command(table["command"], f"[{name}] command") if "command" in table else ()
    webhook = env.get(f"{prefix}_WEBHOOK") or table.get("webhook", "")
    token = env.get(f"{prefix}_WEBHOOK_TOKEN") or table.get("webhook_token", "")
    if webhook:
        webhook = _url(webhook, f"[{name}] webhook")
    if not isinstance(token, str):
        raise ConfigError(f"[{name}] webhook_token must be a string.")
    return Hook(command=command, webhook=webhook, webhook_token=token)


def _owner_hook(table: dict[str, Any], env: Mapping[str, str]) -> Hook:
    """Owner channels besides the npub; the OpenClaw preset sends through `openclaw message`."""
    hook = _hook(table, env, "P2P_OWNER", "owner_channels")
    channel, target = table.get("openclaw_channel"), table.get("openclaw_target")
    if channel or target:
        if not (isinstance(channel, str) and channel and isinstance(target, str) and target):
            raise ConfigError("[owner_channels] needs both openclaw_channel and openclaw_target.")
        command = (
            "openclaw",
            "message",
            "send",
            "--channel",
            channel,
            "--target",
            target,
            "--message",
            "{message}",
        )
        hook = replace(hook, command=hook.command or command)
    return hook


def _wake(table: dict[str, Any], env: Mapping[str, str]) -> WakeConfig:
    hook = _hook(table, env, "P2P_WAKE", "wake")
    preset = env.get("P2P_WAKE_PRESET") or table.get("preset", "")
    if preset == "openclaw":
        hook = replace(hook, command=hook.command or OPENCLAW_WAKE_COMMAND)
    elif preset == "openclaw-webhook":
        hook = replace(hook, webhook=hook.webhook or OPENCLAW_WAKE_WEBHOOK)
    elif preset:
        raise ConfigError(
            f"[wake] preset {preset!r} is unknown; use 'openclaw' or 'openclaw-webhook'."
        )
    events = table.get("events", list(WAKE_EVENTS))
    if not isinstance(events, list) or not set(events) <= set(WAKE_EVENTS):
        raise ConfigError(f"[wake] events must be a list drawn from {', '.join(WAKE_EVENTS)}.")
    numbers = {}
    for key, default in (("debounce", 0.25), ("min_interval", 2.0)):
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"[wake] {key} must be a number of seconds.")
        numbers[key] = float(value)
    return WakeConfig(hook=hook, events=tuple(events), **numbers)
