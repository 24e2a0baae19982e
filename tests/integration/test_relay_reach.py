"""A relay we cannot reach is named with the reason (issue 21, findings 3 and 4).

Connection refused, a DNS failure, a TLS failure and an HTTP status instead of a websocket
upgrade each reach `status`, `doctor` and the log in their own words; `doctor` exits
non-zero when no relay is usable for calls, in whole sentences; a command that needs a
relay (`call`, `list`) says that none is connected.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from p2p_comm.harness import wait_until
from p2p_comm.relay import free_port
from tests.conftest import AgentFactory
from tests.integration.calls_helpers import start_agents
from tests.schema_check import check


@contextmanager
def http_only_server(status: str = "502 Bad Gateway") -> Iterator[int]:
    """A TCP server that answers every request with a plain HTTP ``status`` (a proxy whose
    relay behind it is gone); a TLS client meets bytes that are not TLS."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(4096)
                    conn.sendall(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n".encode())
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        server.close()
        thread.join(5)


def _closed_port_url() -> str:
    return f"ws://127.0.0.1:{free_port()}"


def test_doctor_with_nothing_reachable_fails_in_whole_sentences(make_agent: AgentFactory) -> None:
    url = _closed_port_url()
    alice = make_agent("alice", [url])
    alice.run("daemon", "start")
    report = alice.json("doctor", check=False)
    assert report.pop("_exit") == 1, report
    check("doctor", report)
    assert report["ok"] is False and report["usable"] == 0, report
    assert "no relay is usable for calls" in report["error"]["message"]
    (probe,) = report["relays"]
    verdict = probe["verdict"]
    assert verdict.count("(") == verdict.count(")"), verdict  # nothing cut off
    assert "connection refused" in verdict, verdict
    text = alice.run("doctor", check=False)
    assert text.returncode == 1
    assert f"relay {url}: unusable for calls" in text.stdout
    assert "no relay is usable for calls" in text.stdout + text.stderr


def test_connection_errors_are_named_in_status_doctor_and_log(make_agent: AgentFactory) -> None:
    with http_only_server() as port:
        refused = _closed_port_url()
        dns = "ws://no-such-relay.invalid"
        tls = f"wss://127.0.0.1:{port}"
        http = f"ws://127.0.0.1:{port}"
        alice = make_agent("alice", [refused, dns, tls, http])
        alice.run("daemon", "start")
        expected = {
            refused: "connection refused",
            dns: "DNS",
            tls: "TLS",
            http: "HTTP 502",
        }

        def named() -> bool:
            relays = {r["url"]: r for r in alice.json("status")["relays"]}
            return all(word in relays[url]["last_error"] for url, word in expected.items())

        wait_until(named, 30, "status to name each relay's connection error")
        status = alice.run("status").stdout
        for url, word in expected.items():
            line = next(x for x in status.splitlines() if x.startswith(f"relay {url}"))
            assert word in line, line
            assert "relay not connected" not in line, line
        doctor = {r["url"]: r["verdict"] for r in alice.json("doctor", check=False)["relays"]}
        for url, word in expected.items():
            assert word in doctor[url], doctor[url]
        log = alice.run("daemon", "logs", "--lines", "200").stdout
        for word in expected.values():
            assert word in log, log


def test_call_and_list_say_that_no_relay_is_connected(relay, make_agent: AgentFactory) -> None:  # type: ignore[no-untyped-def]
    alice, _bob = start_agents(relay.url, make_agent, "alice", "bob")
    relay.stop()
    # The daemon learns of the closed connection within moments (not after the 5-minute
    # liveness window of what it saw last).
    wait_until(lambda: alice.run("list", check=False).returncode == 1, 15, "list to fail")
    listed = alice.run("list", check=False)
    assert listed.returncode == 1, listed
    assert "no relay is connected" in listed.stderr, listed.stderr
    assert "bob" not in listed.stdout
    called = alice.run("call", "bob", "anyone there?", check=False)
    assert called.returncode == 1, called
    assert "no relay is connected" in called.stderr, called.stderr
    assert "no online agent" not in called.stderr
    as_json = alice.json("call", "bob", "anyone there?", check=False)
    assert as_json["_exit"] == 1 and as_json["error"]["code"] == "no_relay", as_json
