"""Background tasks of the daemon: started so that a crash is logged, never lost."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

# Where these were always logged (spawn began in the relay module).
log = logging.getLogger("p2p.relays")


def _report_crash(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s crashed", task.get_name(), exc_info=task.exception())


def spawn(coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
    """A background task whose crash is logged instead of vanishing."""
    task = asyncio.create_task(coro, name=name)
    task.add_done_callback(_report_crash)
    return task
