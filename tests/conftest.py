"""Fixtures that start real relays and real agents, and clean up after them."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from p2p_comm.harness import Agent, RelayProcess, wait_until
from p2p_comm.relay import free_port
from tests.layers import layer_of


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test gets its module's layer marker (tests/layers.py): `pytest -m protocol`."""
    for item in items:
        item.add_marker(getattr(pytest.mark, layer_of(Path(item.path))))


NOSTR_RELAY_CONFIG = """\
DEBUG: false
relay_name: p2p-comm test relay
storage:
  sqlalchemy.url: sqlite+aiosqlite:///{db}
  num_concurrent_reqs: 10
  num_concurrent_adds: 2
  validators:
    - nostr_relay.validators.is_not_too_large
    - nostr_relay.validators.is_signed
    - nostr_relay.validators.is_recent
verification:
  nip05_verification: disabled
gunicorn:
  bind: 127.0.0.1:{port}
  workers: 1
  loglevel: warning
  reload: false
authentication:
  enabled: false
message_timeout: 1800
subscription_limit: 32
max_limit: 6000
max_event_size: 65536
"""


class NostrRelayProcess:
    """The independent ``nostr-relay`` package (Python + SQLite) on a free port."""

    def __init__(self, port: int | None = None, package_defaults: bool = False) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="p2p-nostr-relay-", dir="/tmp"))
        self.port = port or free_port()
        # The package's own `max_event_size` (4,096 content characters, refused with an
        # empty-id OK and a connection slowed for good) rather than our 65,536.
        self.package_defaults = package_defaults
        self.url = f"ws://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> NostrRelayProcess:
        config = self.dir / "config.yaml"
        text = NOSTR_RELAY_CONFIG.format(db=self.dir / "relay.sqlite3", port=self.port)
        if self.package_defaults:
            text = text.replace("max_event_size: 65536\n", "")
        config.write_text(text)
        binary = Path(sys.executable).with_name("nostr-relay")
        self.proc = subprocess.Popen(
            [str(binary), "-c", str(config), "serve"],
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "relay.log", "wb"),  # noqa: SIM115
            cwd=self.dir,
            start_new_session=True,
        )
        wait_until(self._accepting, 30, "nostr-relay to accept connections")
        return self

    def _accepting(self) -> bool:
        import socket

        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"nostr-relay exited: {(self.dir / 'relay.log').read_text()}")
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def halt(self) -> None:
        """Stop the process, keeping its database for a restart."""
        if self.proc and self.proc.poll() is None:
            import os

            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def relay() -> Iterator[RelayProcess]:
    process = RelayProcess().start()
    yield process
    process.stop()


@pytest.fixture
def independent_relay() -> Iterator[NostrRelayProcess]:
    process = NostrRelayProcess().start()
    yield process
    process.stop()


AgentFactory = Callable[..., Agent]


@pytest.fixture
def make_agent() -> Iterator[AgentFactory]:
    """Agents in temporary homes; every daemon is stopped and every home removed afterwards."""
    created: list[Agent] = []

    def factory(name: str, relays: list[str], **settings: str) -> Agent:
        agent = Agent(name, relays, **settings)
        created.append(agent)
        return agent

    yield factory
    for agent in created:
        agent.cleanup()
