"""Running hooks: commands (never through a shell) and JSON webhooks, with timeouts.

A failing hook is logged and reported, never fatal. The `Waker` coalesces bursts of
events into one wake-up of the agent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from ...config import Hook, WakeConfig
from ...sanitize import clean_label

log = logging.getLogger("p2p.hooks")

WEBHOOK_ATTEMPTS = 3


def _substitute(argv: tuple[str, ...], values: Mapping[str, str]) -> list[str]:
    """Fill ``{name}`` placeholders; plain replacement, so braces in values stay inert."""
    out = []
    for arg in argv:
        for name, value in values.items():
            arg = arg.replace("{" + name + "}", value)
        out.append(arg)
    return out


async def run_command(
    argv: tuple[str, ...], values: Mapping[str, str], timeout: float
) -> tuple[bool, str]:
    """Run ``argv`` with placeholders filled and values also in ``P2P_*`` variables."""
    env = dict(os.environ)
    env.update({f"P2P_{name.upper()}": value for name, value in values.items()})
    try:
        proc = await asyncio.create_subprocess_exec(
            *_substitute(argv, values),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
    except OSError as exc:
        return False, f"cannot run {argv[0]}: {exc.strerror}"
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return False, f"{argv[0]} timed out after {timeout:g}s"
    if proc.returncode != 0:
        tail = output.decode(errors="replace").strip()[-200:]
        return False, f"{argv[0]} exited with {proc.returncode}: {tail}"
    return True, ""


def _post(url: str, payload: dict[str, Any], token: str, timeout: float) -> None:
    # urllib.request pulls http.client and the email package (1.8 MiB): only for webhooks.
    import urllib.request

    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers=headers, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        response.read(65536)


async def post_webhook(
    url: str, payload: dict[str, Any], token: str, timeout: float
) -> tuple[bool, str]:
    """POST JSON with a few retries on failure; the reason of the last failure if all fail."""
    import urllib.error

    reason = ""
    for attempt in range(WEBHOOK_ATTEMPTS):
        try:
            await asyncio.to_thread(_post, url, payload, token, timeout)
            return True, ""
        except urllib.error.HTTPError as exc:
            reason = f"webhook answered HTTP {exc.code}"
            if 400 <= exc.code < 500 and exc.code != 429:
                break  # our request is wrong; repeating it will not help
        except (OSError, ValueError) as exc:
            reason = f"webhook failed: {exc}"
        await asyncio.sleep(0.5 * 2**attempt)
    return False, reason


async def run_hook(
    hook: Hook, values: Mapping[str, str], payload: dict[str, Any], timeout: float
) -> list[dict[str, Any]]:
    """Run a hook's command and webhook concurrently; one result per channel."""
    jobs: dict[str, Any] = {}
    if hook.command:
        jobs["command"] = run_command(hook.command, values, timeout)
    if hook.webhook:
        jobs["webhook"] = post_webhook(hook.webhook, payload, hook.webhook_token, timeout)
    results = []
    for channel, (ok, error) in zip(jobs, await asyncio.gather(*jobs.values()), strict=True):
        if not ok:
            log.warning("%s hook failed: %s", channel, error)
        results.append({"channel": channel, "ok": ok, **({"error": error} if error else {})})
    return results


RECHECK_AFTER = 2.0  # seconds a `wait` client has to acknowledge what it was handed


class Waker:
    """Wakes the agent on chosen events, coalescing bursts into one wake-up.

    The first event of a burst schedules a wake-up ``debounce`` seconds later (later
    still if the previous one was under ``min_interval`` ago); events arriving before
    it fires ride along. The text names event kinds and peers, never peer content.
    """

    def __init__(
        self,
        config: WakeConfig,
        timeout: float,
        waiting: Callable[[], int],
        is_unread: Callable[[int], bool] = lambda _: True,
    ) -> None:
        self.config = config
        self.timeout = timeout
        self._waiting = waiting
        self._is_unread = is_unread
        self._batch: list[dict[str, Any]] = []
        self._handle: asyncio.TimerHandle | None = None
        self._last_fired = 0.0
        self.fired = 0

    def notify(self, event: dict[str, Any]) -> None:
        if not self.config.hook.configured or event["type"] not in self.config.events:
            return
        if event["type"] == "message" and self._waiting() > 0:
            # An agent blocked in `p2p wait` is being told; unless that wait dies before
            # the agent acknowledges the event, in which case the hook still runs.
            loop = asyncio.get_running_loop()
            loop.call_later(RECHECK_AFTER, self._recheck, event)
            return
        self._add(event)

    def _recheck(self, event: dict[str, Any]) -> None:
        if self._is_unread(int(event.get("event_id", 0))):
            self._add(event)

    def _add(self, event: dict[str, Any]) -> None:
        self._batch.append(event)
        if self._handle is None:
            now = time.monotonic()
            delay = max(self.config.debounce, self._last_fired + self.config.min_interval - now)
            self._handle = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._handle = None
        batch, self._batch = self._batch, []
        if not batch:
            return
        self._last_fired = time.monotonic()
        self.fired += 1
        text = summarize(batch)
        values = {
            "text": text,
            "type": batch[0]["type"],
            "call_id": batch[0].get("call_id") or "",
            "count": str(len(batch)),
        }
        payload = {"text": text, "mode": "now", "events": [_brief(e) for e in batch]}
        task = asyncio.get_running_loop().create_task(
            run_hook(self.config.hook, values, payload, self.timeout)
        )
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)


def _brief(event: dict[str, Any]) -> dict[str, Any]:
    keep = ("type", "event_id", "call_id", "peer", "at")
    return {k: event[k] for k in keep if k in event}


def summarize(batch: list[dict[str, Any]]) -> str:
    """'p2p-comm: 1 call_request (alice), 3 message (bob). Run `p2p inbox` to read them.'"""
    kinds: dict[str, set[str]] = {}
    counts: dict[str, int] = {}
    for event in batch:
        counts[event["type"]] = counts.get(event["type"], 0) + 1
        name = clean_label((event.get("peer") or {}).get("name") or "", 32) or "unknown"
        kinds.setdefault(event["type"], set()).add(name)
    parts = [f"{counts[k]} {k} ({', '.join(sorted(kinds[k]))})" for k in counts]
    return f"p2p-comm: {', '.join(parts)}. Run `p2p inbox` to read them."
