"""Fault injection for the integration tests: a freezing TCP proxy, a noisy relay, a full
disk, a raw Nostr peer, a CPU throttle, and small probes of a daemon process.

Every helper here owns what it starts (threads, sockets, mounts) and undoes it in
``stop``/``close``; the tests use them through fixtures or ``try``/``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import nostr_sdk as ns

from p2p_comm.harness import Agent
from p2p_comm.protocol.presence import Presence, encode_presence
from p2p_comm.protocol.wire import CALL_KIND, WireMessage

# TCP proxy ------------------------------------------------------------------------------


class TcpProxy:
    """A loopback TCP proxy in front of ``target_port`` that can freeze like a dead network.

    ``freeze()`` stops forwarding in both directions without closing anything: both ends
    keep an open, silent connection (a half-open link, as after a NAT drop or a pulled
    cable). New connections are accepted but carry nothing until ``thaw()``.
    """

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self._listener = socket.create_server((host, 0))
        self.port = int(self._listener.getsockname()[1])
        self.url = f"ws://{host}:{self.port}"
        self._frozen = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._thread = threading.Thread(target=self._run, name="tcp-proxy", daemon=True)
        self._thread.start()

    def freeze(self) -> None:
        self._frozen.set()

    def thaw(self) -> None:
        self._frozen.clear()

    def close_all(self) -> None:
        """Close every proxied connection (a clean FIN to both sides)."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.close()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        self.close_all()
        self._listener.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                pairs = list(self._pairs)
            watched: list[socket.socket] = [self._listener]
            if not self._frozen.is_set():
                watched += [sock for pair in pairs for sock in pair]
            try:
                readable, _, _ = select.select(watched, [], [], 0.05)
            except (OSError, ValueError):
                continue  # a socket was closed under us; look again
            for sock in readable:
                if sock is self._listener:
                    self._accept()
                else:
                    self._forward(sock, pairs)

    def _accept(self) -> None:
        client, _ = self._listener.accept()
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        with self._lock:
            self._pairs.append((client, upstream))

    def _forward(
        self, sock: socket.socket, pairs: list[tuple[socket.socket, socket.socket]]
    ) -> None:
        pair = next((p for p in pairs if sock in p), None)
        if pair is None:
            return
        other = pair[1] if sock is pair[0] else pair[0]
        try:
            data = sock.recv(65536)
            if data:
                other.sendall(data)
                return
        except OSError:
            pass
        with self._lock:
            if pair in self._pairs:
                self._pairs.remove(pair)
        for end in pair:
            with contextlib.suppress(OSError):
                end.close()


# CPU throttle ---------------------------------------------------------------------------


class Throttle:
    """Let a process run only ``share`` of every ``period`` (SIGSTOP, then SIGCONT): the
    daemon of an agent on a crowded machine, made repeatable. It costs no CPU itself."""

    def __init__(self, pid: int, share: float = 0.1, period: float = 0.1) -> None:
        self.pid = pid
        self.share = share
        self.period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="throttle", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                os.kill(self.pid, signal.SIGCONT)
                self._stop.wait(self.period * self.share)
                os.kill(self.pid, signal.SIGSTOP)
                self._stop.wait(self.period * (1 - self.share))
        except ProcessLookupError:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGCONT)


# Noisy relay ------------------------------------------------------------------------------


def junk_wrap(receiver_hex: str) -> Any:
    """A validly signed kind-1059 event for ``receiver_hex`` that no one can unwrap."""
    key = ns.Keys.generate()
    content = os.urandom(600).hex()
    return (
        ns.EventBuilder(ns.Kind(1059), content)
        .tags([ns.Tag.public_key(ns.PublicKey.parse(receiver_hex))])
        .finalize(key)
    )


class NoisyRelay:
    """A tiny websocket "relay" that answers every REQ asking for gift wraps with noise.

    ``mode="repeat"`` sends one event on that subscription again and again;
    ``mode="junk"`` floods fresh, validly signed but undecryptable kind-1059 events for
    ``receiver_hex``; ``mode="query"`` does that only to one-off queries (a REQ with a
    `limit`, never ending in EOSE) and leaves live subscriptions quiet. Other REQs get an
    EOSE, every EVENT an OK, so the daemon treats it as a working relay. ``rate`` bounds the
    events per second (the machine is shared).
    Unless ``armed``, the noise waits for `arm` (so a test can set the scene first).
    """

    def __init__(self, mode: str, receiver_hex: str, rate: int = 3000, armed: bool = True) -> None:
        assert mode in ("repeat", "junk", "query")
        self.mode = mode
        self._armed = threading.Event()
        if armed:
            self._armed.set()
        self.receiver_hex = receiver_hex
        self.rate = rate
        self.sent = 0
        self.port = 0
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="noisy-relay", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the noisy relay did not start")

    def arm(self) -> None:
        """Start the noise on every gift-wrap subscription, open or to come."""
        self._armed.set()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        from websockets.asyncio.server import serve

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(self._handle, "127.0.0.1", 0, max_size=2**22) as server:
            sock = next(iter(server.sockets))
            self.port = int(sock.getsockname()[1])
            self.url = f"ws://127.0.0.1:{self.port}"
            self._ready.set()
            await self._stop.wait()
            server.close()

    async def _handle(self, connection: Any) -> None:
        floods: list[asyncio.Task[None]] = []
        try:
            async for raw in connection:
                message = json.loads(raw)
                if message[0] == "EVENT":
                    await connection.send(json.dumps(["OK", message[1]["id"], True, ""]))
                elif message[0] == "REQ":
                    sub_id, filters = message[1], message[2:]
                    wraps = any(1059 in f.get("kinds", []) for f in filters)
                    if wraps and (self.mode != "query" or any("limit" in f for f in filters)):
                        floods.append(asyncio.create_task(self._flood(connection, sub_id)))
                    else:
                        await connection.send(json.dumps(["EOSE", sub_id]))
                elif message[0] == "CLOSE":
                    await connection.send(json.dumps(["CLOSED", message[1], ""]))
        except Exception:  # the daemon hung up or sent something odd: just end this connection
            pass
        finally:
            for task in floods:
                task.cancel()

    async def _flood(self, connection: Any, sub_id: str) -> None:
        repeated = json.loads(junk_wrap(self.receiver_hex).as_json())
        batch = max(1, self.rate // 50)
        with contextlib.suppress(Exception):
            while not self._armed.is_set():
                await asyncio.sleep(0.02)
            while True:
                for _ in range(batch):
                    event = (
                        repeated
                        if self.mode == "repeat"
                        else json.loads(junk_wrap(self.receiver_hex).as_json())
                    )
                    await connection.send(json.dumps(["EVENT", sub_id, event]))
                    self.sent += 1
                await asyncio.sleep(0.02)


# Full disk ---------------------------------------------------------------------------------


class Tmpfs:
    """A small tmpfs mounted on a directory (needs root), with a ballast file to fill it."""

    def __init__(self, mountpoint: Path, size: str) -> None:
        self.mountpoint = mountpoint
        self.ballast = mountpoint / ".ballast"
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mountpoint)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"cannot mount a tmpfs on {mountpoint} (the full-disk tests need root): "
                f"{result.stderr.strip()}"
            )

    def fill(self) -> int:
        """Write the ballast until the file system is full; returns the bytes written."""
        written = 0
        fd = os.open(self.ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            # Large blocks first, then ever smaller ones, so that not even a page is left.
            for size in (1 << 20, 65536, 4096, 512, 1):
                block = b"\0" * size
                while True:
                    try:
                        written += os.write(fd, block)
                    except OSError:
                        break
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        self.ballast.unlink(missing_ok=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True)


# Raw Nostr peer ------------------------------------------------------------------------------


class RawPeer:
    """A bare nostr-sdk client speaking the call protocol by hand (as an outside implementer
    or an attacker would), one short-lived connection per action."""

    def __init__(self, relay_url: str, keys: Any | None = None) -> None:
        self.relay_url = relay_url
        self.keys = keys or ns.Keys.generate()
        self.pubkey = self.keys.public_key().to_hex()

    def wrap(self, receiver_hex: str, message: WireMessage, created_at: int | None = None) -> Any:
        """Gift-wrap ``message`` for ``receiver_hex``; ``created_at`` sets the rumor's time."""
        builder = ns.EventBuilder(ns.Kind(CALL_KIND), message.encode())
        if created_at is not None:
            builder = builder.custom_created_at(ns.Timestamp.from_secs(created_at))
        rumor = builder.finalize_unsigned(self.keys.public_key())
        return ns.nip59_make_gift_wrap(self.keys, ns.PublicKey.parse(receiver_hex), rumor)

    def wrap_unsigned_seal(self, receiver_hex: str, message: WireMessage) -> Any:
        """Gift-wrap ``message`` in a seal in this peer's name whose signature is not its
        own (another seal's): what a key's holder that does not sign, or a relay splicing
        signatures, could send (without the key, even the seal's NIP-44 content is out of
        reach: it is encrypted between that key and the receiver's)."""
        receiver = ns.PublicKey.parse(receiver_hex)
        rumor = ns.EventBuilder(ns.Kind(CALL_KIND), message.encode())
        seal = json.loads(
            ns.nip59_make_seal(
                self.keys, receiver, rumor.finalize_unsigned(self.keys.public_key())
            ).as_json()
        )
        other = ns.nip59_make_seal(
            self.keys, receiver, rumor.finalize_unsigned(self.keys.public_key())
        )
        seal["sig"] = json.loads(other.as_json())["sig"]
        one_time = ns.Keys.generate()
        content = ns.nip44_encrypt(
            one_time.secret_key(), receiver, json.dumps(seal), ns.Nip44Version.V2
        )
        return (
            ns.EventBuilder(ns.Kind(1059), content)
            .tags([ns.Tag.public_key(receiver)])
            .finalize(one_time)
        )

    def presence(self, name: str, created_at: int, relays: tuple[str, ...] = ()) -> Any:
        """A presence announcement in this peer's name, stamped ``created_at``."""
        content, tags = encode_presence(
            Presence(name=name, relays=relays or (self.relay_url,)), created_at + 300
        )
        return (
            ns.EventBuilder(ns.Kind(30078), content)
            .tags([ns.Tag.parse(tag) for tag in tags])
            .custom_created_at(ns.Timestamp.from_secs(created_at))
            .finalize(self.keys)
        )

    def publish(self, *events: Any) -> None:
        asyncio.run(self._publish(list(events)))

    def received(self) -> list[dict[str, Any]]:
        """Every call-protocol document gift-wrapped to us on the relay, as raw JSON
        (not through our decoder: a newer protocol version must still be readable)."""
        return asyncio.run(self._received())

    async def _client(self) -> Any:
        ns.uniffi_set_event_loop(asyncio.get_running_loop())
        client = ns.Client()
        await client.add_relay(ns.RelayUrl.parse(self.relay_url))
        await client.connect(and_wait=timedelta(seconds=5))
        return client

    async def _publish(self, events: list[Any]) -> None:
        client = await self._client()
        try:
            for event in events:
                await client.send_event(event)
        finally:
            await client.shutdown()

    async def _received(self) -> list[dict[str, Any]]:
        client = await self._client()
        try:
            query = ns.Filter().kind(ns.Kind(1059)).pubkey(self.keys.public_key())
            events = await client.fetch_events(
                ns.ReqTarget.auto([query]), timeout=timedelta(seconds=3)
            )
        finally:
            await client.shutdown()
        documents = []
        for event in events if isinstance(events, list) else events.to_vec():
            try:
                rumor = ns.UnwrappedGift.from_gift_wrap(self.keys, event).rumor()
                document = json.loads(rumor.content())
            except Exception:
                continue
            if isinstance(document, dict):
                document["_created_at"] = rumor.created_at().as_secs()
                documents.append(document)
        return sorted(documents, key=lambda d: (d.get("seq", 0), d["_created_at"]))


def raw_call(relay_url: str, agent: Agent, level: int = 2) -> tuple[RawPeer, str]:
    """A raw peer of feature level ``level`` rings ``agent``, which sees the request and
    answers it: (the peer, the call id)."""
    import secrets

    from tests.integration.calls_helpers import events_of

    peer = RawPeer(relay_url)
    call_id = secrets.token_hex(16)
    body = {"topic": "raw", "name": "raw", "pv": level}
    peer.publish(
        peer.wrap(agent.json("whoami")["pubkey"], WireMessage("request", call_id, 1, body=body))
    )
    events_of(agent, "call_request")
    agent.json("answer", "accept", "--call", call_id[:8])
    return peer, call_id


def identity_keys(agent: Agent) -> Any:
    """An agent's own key pair, read from its test home (to speak in its name)."""
    document = json.loads(agent.paths.identity.read_text())
    return ns.Keys.parse(document["secret_key"])


# Probes --------------------------------------------------------------------------------------


def proc_status_kib(pid: int, field: str) -> int:
    """A ``VmRSS``/``VmHWM``-style line of /proc/PID/status, in KiB."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


@contextlib.contextmanager
def raw_socket(agent: Agent, timeout: float = 30.0) -> Iterator[socket.socket]:
    """A plain connection to the agent's control socket."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(agent.paths.socket))
        yield sock
    finally:
        sock.close()


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """True if the other end closes ``sock`` within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        sock.settimeout(remaining)
        try:
            if sock.recv(4096) == b"":
                return True
        except TimeoutError:
            return False
        except OSError:
            return True
