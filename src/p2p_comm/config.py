"""Configuration: built-in defaults, then ``<home>/p2p-config.toml``, then ``P2P_*`` variables."""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .protocol.call import Limits
from .protocol.limits import InboundLimits
from .protocol.loops import LoopBudget

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
    # Where we receive gift wraps (our kind 10050, the wrap subscription); empty: `relays`.
    inbox_relays: tuple[str, ...] = ()
    name: str = ""
    description: str = ""
    capabilities: tuple[str, ...] = ()
    owner: str = ""
    announce_interval: float = 120.0
    # About 2.5 announce intervals, unless set explicitly.
    liveness_window: float = 0.0
    # Limit defaults are the protocol's own, defined once there.
    ring_timeout: float = Limits.ring_timeout
    max_message_bytes: int = Limits.max_message_bytes
    max_file_bytes: int = Limits.max_file_bytes
    log_level: str = "INFO"
    hook_timeout: float = 10.0
    call_policy: str = "anyone"
    call_requests_per_peer_per_minute: int = InboundLimits.call_requests_per_peer_per_minute
    max_ringing: int = InboundLimits.max_ringing
    max_open_calls: int = InboundLimits.max_open_calls
    bytes_per_peer_per_minute: int = InboundLimits.bytes_per_peer_per_minute
    inbound_events_per_second: int = InboundLimits.inbound_events_per_second
    relay_mute_seconds: float = InboundLimits.relay_mute_seconds
    # Runaway-loop protection per call (protocol/loops.py); 0 turns a check off.
    loop_turns_per_minute: int = LoopBudget.per_minute
    loop_max_turns: int = LoopBudget.max_turns
    loop_repeats: int = LoopBudget.repeats
    # Forward secrecy (docs/PROTOCOL.md 3.12): true refuses calls with peers that cannot
    # set up the call ratchet (older versions); false runs those calls as before.
    require_forward_secrecy: bool = False
    # Transcripts are the agent's plaintext record of its calls; false keeps none on disk.
    keep_transcripts: bool = True
    # Call lanes (docs/PROTOCOL.md 3.13): our wraps in a call are keyed so the peer knows
    # them before opening them; false gives every wrap a fresh key, and expects none.
    call_lanes: bool = True
    owner_hook: Hook = Hook()
    wake: WakeConfig = WakeConfig()

    @property
    def effective_liveness_window(self) -> float:
        return self.liveness_window or self.announce_interval * 2.5

    @property
    def effective_inbox_relays(self) -> tuple[str, ...]:
        """Where peers send to us: the inbox set if one is configured, else `relays`."""
        return self.inbox_relays or self.relays

    @property
    def all_relays(self) -> tuple[str, ...]:
        """Every relay we connect to: the announce set, then inbox relays not among it."""
        return tuple(dict.fromkeys((*self.relays, *self.inbox_relays)))


# Environment variable -> field. Lists are comma-separated.
ENV_VARS = {
    "P2P_RELAYS": "relays",
    "P2P_INBOX_RELAYS": "inbox_relays",
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
    "P2P_RELAY_MUTE_SECONDS": "relay_mute_seconds",
    "P2P_LOOP_TURNS_PER_MINUTE": "loop_turns_per_minute",
    "P2P_LOOP_MAX_TURNS": "loop_max_turns",
    "P2P_LOOP_REPEATS": "loop_repeats",
    "P2P_REQUIRE_FORWARD_SECRECY": "require_forward_secrecy",
    "P2P_KEEP_TRANSCRIPTS": "keep_transcripts",
    "P2P_CALL_LANES": "call_lanes",
}
# The other variables that configure the daemon: its hooks.
HOOK_ENV_VARS = (
    "P2P_OWNER_WEBHOOK",
    "P2P_OWNER_WEBHOOK_TOKEN",
    "P2P_WAKE_PRESET",
    "P2P_WAKE_WEBHOOK",
    "P2P_WAKE_WEBHOOK_TOKEN",
)
# What people call the config file by mistake: it is not read, and we say so.
MISNAMED_CONFIG = "config.toml"


def config_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``environ`` that configure the daemon (set and not blank)."""
    names = (*ENV_VARS, *HOOK_ENV_VARS)
    return {name: environ[name].strip() for name in names if environ.get(name, "").strip()}


# Integer keys where 0 means "off".
_ZERO_MEANS_OFF = {"loop_turns_per_minute", "loop_max_turns", "loop_repeats"}
CALL_POLICIES = ("anyone", "contacts", "nobody")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Tables handled by their own parsers, not by _coerce; `owner_hook` and `wake` are built
# from the [owner_channels] and [wake] tables, never set directly.
_TABLES = {"owner_channels", "wake"}
_TABLE_KEYS = {
    "owner_channels": (
        *("command", "webhook", "webhook_token", "openclaw_channel", "openclaw_target"),
    ),
    "wake": (
        *("preset", "command", "webhook", "webhook_token", "events", "debounce", "min_interval"),
    ),
}

_FIELD_TYPES = {f.name: f.type for f in fields(Config) if f.name not in ("owner_hook", "wake")}
_TOP_KEYS = (*_FIELD_TYPES, *_TABLES)

KIB, MIB, GIB = 1024, 1024 * 1024, 1024 * 1024 * 1024
# (low, high, unit) per number; README's configuration table states the same bounds.
# A bound exists because a value outside it breaks something: announce_interval = 0 floods
# the relays, max_file_bytes = 1e99 promises what no disk holds.
BOUNDS: dict[str, tuple[float, float, str]] = {
    "announce_interval": (10, 3600, "seconds"),
    "liveness_window": (10, 86400, "seconds"),
    "ring_timeout": (1, 3600, "seconds"),
    "hook_timeout": (1, 300, "seconds"),
    "max_message_bytes": (1 * KIB, 16 * MIB, "bytes"),
    "max_file_bytes": (1, 1 * GIB, "bytes"),
    "call_requests_per_peer_per_minute": (1, 600, "per minute"),
    "max_ringing": (1, 1000, ""),
    "max_open_calls": (1, 10_000, ""),
    "bytes_per_peer_per_minute": (1 * KIB, 4 * GIB, "bytes per minute"),
    "inbound_events_per_second": (1, 100_000, "per second"),
    "relay_mute_seconds": (1, 3600, "seconds"),
    # 0 turns each loop check off (see _ZERO_MEANS_OFF).
    "loop_turns_per_minute": (0, 10_000, "turns per minute"),
    "loop_max_turns": (0, 1_000_000, "turns"),
    "loop_repeats": (0, 1000, "repeats"),
}
# On relays that are all on this machine (a private relay, the tests, the demo) timers may
# be short: nobody else's relay is flooded.
LOOPBACK_FLOORS = {"announce_interval": 0.2, "liveness_window": 0.5}
_OWNER = re.compile(r"npub1[02-9ac-hj-np-z]{58}|[0-9a-f]{64}")


def _did_you_mean(key: str, known: tuple[str, ...]) -> str:
    import difflib  # only for a mistyped key: not in every daemon's memory

    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def _check_keys(table: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in known:
            raise ConfigError(f"{where}: unknown key '{key}'.{_did_you_mean(key, known)}")


def _coerce(key: str, value: Any, source: str, from_file: bool = False) -> Any:
    kind = _FIELD_TYPES[key]
    if (
        from_file
        and kind == "tuple[str, ...]"
        and not (isinstance(value, list) and all(isinstance(item, str) for item in value))
    ):
        raise ConfigError(
            f"{source}: '{key}' must be a list of strings, e.g. {key} = [\"...\"]"
            f" (it is {value!r})."
        )
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            word = str(value).strip().lower() if not from_file else None
            if word in ("true", "1", "yes", "on"):
                return True
            if word in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if kind == "tuple[str, ...]":
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(item).strip() for item in items if str(item).strip())
        if kind in ("float", "int"):
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if not math.isfinite(number) or number < 0:
                raise ValueError
            if kind == "int":
                if number != int(number):
                    raise ValueError
                return int(number)
            return number
        if not isinstance(value, str):
            raise ValueError
        return value.strip()
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: '{key}' has an unusable value {value!r}.") from None


def _validate_relays(relays: tuple[str, ...], source: str, required: bool = True) -> None:
    if required and not relays:
        raise ConfigError(f"{source}: at least one relay is needed.")
    for url in relays:
        if not url.startswith(("ws://", "wss://")):
            raise ConfigError(f"{source}: relay {url!r} must start with ws:// or wss://.")


def _num(value: float) -> str:
    """A bound or value as people write it: 1073741824, 0.5, 1e+99."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def _all_loopback(relays: tuple[str, ...]) -> bool:
    for url in relays:
        host = urlsplit(url).hostname or ""
        if host == "localhost":
            continue
        try:
            if not ipaddress.ip_address(host).is_loopback:
                return False
        except ValueError:
            return False
    return True


def _check_bounds(config: Config, sources: Mapping[str, str]) -> None:
    loopback = _all_loopback(config.all_relays)
    for key, (low, high, unit) in BOUNDS.items():
        value = getattr(config, key)
        if key == "liveness_window" and value == 0:
            continue  # 0: about 2.5 announce intervals
        if loopback:
            low = LOOPBACK_FLOORS.get(key, low)
        if not low <= value <= high:
            where = sources.get(key, key)
            raise ConfigError(
                f"{where}: '{key}' is {_num(value)}; it must be between {_num(low)} and"
                f" {_num(high)}" + (f" {unit}." if unit else ".")
            )
    if config.liveness_window and config.liveness_window < config.announce_interval:
        raise ConfigError(
            f"{sources.get('liveness_window', 'liveness_window')}: 'liveness_window' must be at"
            f" least announce_interval ({config.announce_interval:g} s), or 0 for the default."
        )
    level = config.log_level.upper()
    if level not in LOG_LEVELS:
        raise ConfigError(
            f"{sources.get('log_level', 'log_level')}: 'log_level' is {config.log_level!r};"
            f" use one of {', '.join(LOG_LEVELS)}."
        )
    if config.owner and not _OWNER.fullmatch(config.owner):
        raise ConfigError(
            f"{sources.get('owner', 'owner')}: 'owner' must be the owner's npub (npub1...) or"
            " 64-character hex public key."
        )


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read defaults, then the TOML file if present, then environment overrides.

    Strict: an unknown key, a value of the wrong type or one outside its bounds is an error
    that names the key and where it came from."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        _check_keys(raw, _TOP_KEYS, str(path))
        for key, value in raw.items():
            if key not in _TABLES:
                values[key] = _coerce(key, value, str(path), from_file=True)
                sources[key] = str(path)
        owner_table = _table(raw.get("owner_channels", {}), "owner_channels")
        wake_table = _table(raw.get("wake", {}), "wake")
        _check_keys(owner_table, _TABLE_KEYS["owner_channels"], f"{path} [owner_channels]")
        _check_keys(wake_table, _TABLE_KEYS["wake"], f"{path} [wake]")
    else:
        owner_table, wake_table = {}, {}
    for var, key in ENV_VARS.items():
        if var in environ and environ[var].strip():
            values[key] = _coerce(key, environ[var], var)
            sources[key] = var
    values["owner_hook"] = _owner_hook(owner_table, environ)
    values["wake"] = _wake(wake_table, environ)
    config = replace(Config(), **values)
    _validate_relays(config.relays, "relays")
    _validate_relays(config.inbox_relays, "inbox_relays", required=False)
    if config.call_policy not in CALL_POLICIES:
        raise ConfigError(f"call_policy must be one of {', '.join(CALL_POLICIES)}.")
    _check_bounds(config, sources)
    return replace(config, log_level=config.log_level.upper())


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
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 3600:
            raise ConfigError(f"[wake] {key} must be a number of seconds from 0 to 3600.")
        numbers[key] = float(value)
    return WakeConfig(hook=hook, events=tuple(events), **numbers)
