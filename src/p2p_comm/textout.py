"""Plain-text rendering of daemon results for an LLM reader: one fact per line."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Renderer = Callable[[dict[str, Any]], list[str]]


def _ago(seconds: float | int | None) -> str:
    if seconds is None:
        return "never"
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s ago"
    return f"{seconds // 60}m ago"


def _identity(ident: dict[str, Any]) -> list[str]:
    return [
        f"name: {ident['name']}",
        f"npub: {ident['npub']}",
        f"pubkey: {ident['pubkey']}",
        "relays: " + ", ".join(ident["relays"]),
    ]


def _relay_line(relay: dict[str, Any]) -> str:
    latency = f", {relay['latency_ms']} ms" if relay.get("latency_ms") is not None else ""
    return f"relay {relay['url']}: {relay['state']}{latency}"


def render_status(result: dict[str, Any]) -> list[str]:
    daemon = result["daemon"]
    lines = _identity(result["identity"])
    lines.append(f"daemon: running, pid {daemon['pid']}, up {daemon['uptime_s']}s")
    lines.extend(_relay_line(r) for r in result["relays"])
    total = len(result["relays"])
    lines.append(f"relays connected: {result['connected_relays']} of {total}")
    lines.append(f"presence: {result['presence']['status']}")
    lines.append(f"agents online: {result['online_agents']}")
    return lines


def render_whoami(result: dict[str, Any]) -> list[str]:
    return _identity(result)


def render_list(result: dict[str, Any]) -> list[str]:
    agents = result["agents"]
    if not agents:
        return ["no agents online"]
    lines = [f"agents online: {len(agents)}"]
    for agent in agents:
        caps = ",".join(agent["capabilities"]) or "-"
        flag = " name_conflict=yes" if agent.get("name_conflict") else ""
        lines.append(
            f"- {agent['name']} npub={agent['npub']} status={agent['status']} "
            f"capabilities={caps} last_seen={_ago(agent['age_s'])}{flag}"
        )
        if agent.get("description"):
            lines.append(f"  description: {agent['description']}")
    return lines


def render_daemon(result: dict[str, Any]) -> list[str]:
    if "lines" in result:
        return [f"log: {result['log']}", *result["lines"]]
    if result["daemon"] == "stopped":
        return ["daemon stopped" if result["was_running"] else "daemon was not running"]
    verb = "started" if result.get("started") else "already running"
    return [f"daemon {verb}, pid {result['pid']}"]


RENDERERS: dict[str, Renderer] = {
    "status": render_status,
    "whoami": render_whoami,
    "list": render_list,
}


def render(command: str, result: Any) -> str:
    if command.startswith("daemon"):
        return "\n".join(render_daemon(result))
    renderer = RENDERERS.get(command)
    if renderer is None or not isinstance(result, dict):
        return str(result)
    return "\n".join(renderer(result))
