"""Starting and stopping the daemon from the CLI, without asyncio or nostr_sdk."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Callable

from . import rpc
from .paths import HomePaths, ensure_private_dir

START_TIMEOUT = 20.0


class LaunchError(Exception):
    """The daemon could not be started or stopped; the message is for the user."""


def lock_held(paths: HomePaths) -> bool:
    """True while some daemon holds this home's lock."""
    try:
        fd = os.open(paths.lock, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def lock_holder_pid(paths: HomePaths) -> int | None:
    try:
        text = paths.lock.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    delay = 0.005
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    return predicate()


def _answers(paths: HomePaths) -> bool:
    try:
        rpc.request(paths.socket, "ping", timeout=2)
        return True
    except rpc.RpcError:
        return False


def _read_ready(fd: int, timeout: float) -> str:
    import select

    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


def start(paths: HomePaths) -> None:
    """Start a detached daemon for this home and wait until it answers."""
    import subprocess

    try:
        ensure_private_dir(paths.home)
        log_fd = os.open(paths.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError as exc:
        raise LaunchError(
            f"cannot write to the home {paths.home} ({exc.strerror or exc}); make it writable"
            " or point P2P_HOME elsewhere."
        ) from None
    read_fd, write_fd = os.pipe()
    env = dict(os.environ, P2P_HOME=os.fspath(paths.home))
    try:
        subprocess.Popen(
            [sys.executable, "-m", "p2p_comm.daemon", "--ready-fd", str(write_fd)],
            pass_fds=(write_fd,),
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            start_new_session=True,
            env=env,
            cwd=os.fspath(paths.home),
        )
    finally:
        os.close(write_fd)
        os.close(log_fd)
    try:
        reply = _read_ready(read_fd, START_TIMEOUT)
    finally:
        os.close(read_fd)
    if reply == "ready":
        return
    if reply.startswith("already-running"):
        if _wait_for(lambda: _answers(paths), START_TIMEOUT):
            return
        raise LaunchError("another daemon holds this home's lock but does not answer.")
    if reply.startswith("error: "):
        raise LaunchError(reply[len("error: ") :])
    raise LaunchError(f"the daemon did not start; see {paths.log}.")


def ensure_running(paths: HomePaths) -> None:
    if not _answers(paths):
        start(paths)


def stop(paths: HomePaths, timeout: float = 10.0) -> bool:
    """Stop the daemon cleanly; returns False if none was running."""
    if not lock_held(paths):
        return False
    try:
        rpc.request(paths.socket, "shutdown", timeout=5)
    except rpc.RpcError:
        # Unreachable but alive (e.g. its socket was tampered with): ask via the signal.
        pid = lock_holder_pid(paths)
        if pid:
            import signal

            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    if not _wait_for(lambda: not lock_held(paths), timeout):
        raise LaunchError("the daemon did not stop in time.")
    return True
