"""NIP-11: real relays' documents parse to the limits they announce; junk parses to nothing."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from p2p_comm.nostr import nip11
from p2p_comm.nostr.nip11 import RelayLimits

CASES = json.loads((Path(__file__).parent / "vectors" / "nip11_documents.json").read_text())[
    "cases"
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case["name"])
def test_real_relay_documents(case: dict[str, Any]) -> None:
    assert nip11.parse(case["document"]) == RelayLimits(**case["expect"])


def test_documents_survive_a_json_round_trip() -> None:
    # What arrives over HTTP is bytes: the parse must not depend on Python-side types.
    for case in CASES:
        again = json.loads(json.dumps(case["document"]).encode())
        assert nip11.parse(again) == RelayLimits(**case["expect"])


@pytest.mark.parametrize(
    "document",
    [
        None,
        [],
        "limitation",
        65536,
        True,
        {},
        {"limitation": None},
        {"limitation": []},
        {"limitation": "max_message_length=65536"},
        {"limitation": [["max_message_length", 1]]},
    ],
)
def test_junk_documents_give_all_unknown(document: object) -> None:
    assert nip11.parse(document) == RelayLimits()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_message_length", "65536"),  # a string
        ("max_message_length", True),  # a bool is an int in Python, not in JSON
        ("max_message_length", 100),  # no gift wrap fits: misconfigured
        ("max_message_length", -1),
        ("max_message_length", 2**62),
        ("max_message_length", 65536.5),
        ("max_message_length", float("nan")),
        ("max_message_length", float("inf")),
        ("max_message_length", None),
        ("max_message_length", {"bytes": 65536}),
        ("max_subscriptions", 0),
        ("max_limit", -500),
        ("max_event_tags", [100]),
        ("min_pow_difficulty", 257),
        ("min_pow_difficulty", -3),
        ("created_at_lower_limit", -1),
        ("created_at_lower_limit", 10**12),
        ("created_at_upper_limit", "3"),
        ("auth_required", 1),
        ("auth_required", "true"),
        ("payment_required", None),
        ("restricted_writes", [True]),
    ],
)
def test_wrong_types_and_absurd_values_are_ignored(field: str, value: object) -> None:
    # One bad field must not spoil the good one beside it.
    document = {"limitation": {field: value, "max_limit": 500}}
    assert nip11.parse(document) == RelayLimits(max_limit=500)


def test_integral_floats_and_bounds_are_taken() -> None:
    document = {
        "limitation": {
            "max_message_length": 65536.0,
            "min_pow_difficulty": 0,
            "created_at_lower_limit": 0,
            "max_subscriptions": 1,
        }
    }
    assert nip11.parse(document) == RelayLimits(
        max_message_length=65536,
        min_pow_difficulty=0,
        created_at_lower_limit=0,
        max_subscriptions=1,
    )


def test_http_url() -> None:
    assert nip11.http_url("wss://relay.example.com/inbox") == "https://relay.example.com/inbox"
    assert nip11.http_url("ws://127.0.0.1:7777") == "http://127.0.0.1:7777"
    assert nip11.http_url("https://relay.example.com") == "https://relay.example.com"


# --- fetch, against a real HTTP server on loopback ------------------------------------


class _Relay(BaseHTTPRequestHandler):
    """Answers like a relay: the document only to ``Accept: application/nostr+json``."""

    body: ClassVar[bytes] = b""
    content_type: ClassVar[str] = "application/nostr+json"
    delay: ClassVar[float] = 0.0
    accepts: ClassVar[list[str]] = []
    redirect: ClassVar[str] = ""  # answer GET / with a 301 to this path
    chunked: ClassVar[bool] = False

    def do_GET(self) -> None:
        accept = self.headers.get("Accept", "")
        type(self).accepts.append(accept)
        if self.delay:
            time.sleep(self.delay)
        if self.redirect and self.path == "/":
            self.send_response(301)
            self.send_header("Location", self.redirect)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if accept != "application/nostr+json":
            body, kind = b"<html>Please use a Nostr client</html>", "text/html"
        else:
            body, kind = self.body, self.content_type
        self.send_response(200)
        self.send_header("Content-Type", kind)
        if self.chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for at in range(0, len(body), 7):
                piece = body[at : at + 7]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that stops reading (size cap, timeout) breaks the pipe: expected


@pytest.fixture
def relay_http() -> Iterator[tuple[str, type[_Relay]]]:
    handler = type("Handler", (_Relay,), {"accepts": []})
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_fetch_reads_the_document_with_the_nostr_accept_header(
    relay_http: tuple[str, type[_Relay]],
) -> None:
    url, handler = relay_http
    handler.body = json.dumps(CASES[0]["document"]).encode()
    assert nip11.fetch(url, timeout=2) == RelayLimits(**CASES[0]["expect"])
    assert handler.accepts == ["application/nostr+json"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"<html>not json</html>", None),
        (b"\xff\xfe{}", None),
        (b"", None),
        (b" " * (nip11.MAX_DOCUMENT_BYTES - 1) + b"{}", None),  # over the size cap
        (b"[" * 50_000 + b"]" * 50_000, None),  # nested too deep for the JSON decoder
        (b"{}", RelayLimits()),
        (b'{"limitation": {"max_message_length": "big"}}', RelayLimits()),
    ],
    ids=["html", "not utf-8", "empty", "huge", "deep", "empty object", "junk limit"],
)
def test_fetch_tolerates_bad_documents(
    relay_http: tuple[str, type[_Relay]], body: bytes, expected: RelayLimits | None
) -> None:
    url, handler = relay_http
    handler.body = body
    assert nip11.fetch(url, timeout=2) == expected


def test_fetch_follows_a_redirect_and_reads_a_chunked_body(
    relay_http: tuple[str, type[_Relay]],
) -> None:
    url, handler = relay_http
    handler.body = json.dumps(CASES[0]["document"]).encode()
    handler.redirect, handler.chunked = "/nip11", True
    assert nip11.fetch(url, timeout=2) == RelayLimits(**CASES[0]["expect"])
    assert handler.accepts == ["application/nostr+json"] * 2


def test_fetch_gives_up_at_its_timeout(relay_http: tuple[str, type[_Relay]]) -> None:
    url, handler = relay_http
    handler.body, handler.delay = b"{}", 3.0
    started = time.monotonic()
    assert nip11.fetch(url, timeout=0.3) is None
    assert time.monotonic() - started < 2.0


def test_fetch_of_a_closed_port_or_other_scheme_is_none() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Bound but never listening: the connection is refused at once.
    assert nip11.fetch(f"ws://127.0.0.1:{port}", timeout=1) is None
    assert nip11.fetch("file:///etc/passwd") is None
