from p2p_comm.daemon.relays.relay_health import RelayHealth

A, B = "wss://a", "wss://b"


def test_rate_limited_relay_is_paced_not_skipped() -> None:
    health = RelayHealth()
    assert health.of(A).pacer.reserve(0) == 0, "no limit seen: no pacing"
    health.record(A, "e1", "rate-limited: slow down", now=0)
    assert health.targets((A, B), "e2", 100, now=0.1) == [A, B]
    rate = health.of(A).pacer.rate
    assert rate is not None and rate > 0
    assert health.of(A).pacer.reserve(0.1) > 0, "the next event waits for a token"
    # One burst of refusals lowers the rate once; a later one lowers it again.
    health.record(A, "e2", "rate-limited: again", now=0.2)
    assert health.of(A).pacer.rate == rate
    health.record(A, "e3", "rate-limited: again", now=5)
    lowered = health.of(A).pacer.rate
    assert lowered is not None and lowered < rate
    health.record(A, "e4", None, now=10)
    assert (health.of(A).pacer.rate or 0) > lowered, "accepted events let the rate grow"


def test_model_learns_pow_kinds_and_auth_from_refusals() -> None:
    health = RelayHealth()
    health.record(A, "e1", "pow: required a difficulty >= 20", now=0, kind=30078)
    health.record(A, "e2", "blocked: note kind is not allowed here", now=0, kind=30078)
    assert health.pow_for((A, B)) == 20
    assert 30078 in health.of(A).refused_kinds
    problems = " ".join(health.problems(A))
    assert "PoW 20" in problems and "refuses kind 30078" in problems
    health.record(A, "e3", "auth-required: all requests must be authenticated", now=0)
    assert health.targets((A,), "e3", 1, now=0) == [A], "auth-required is retried"


def test_smallest_limit_among_relays() -> None:
    health = RelayHealth()
    assert health.smallest_limit((A, B)) is None
    health.of(A).max_message_length = 16384
    health.of(B).max_message_length = 131072
    assert health.smallest_limit((A, B)) == 16384


def test_invalid_or_blocked_is_never_retried_for_that_event() -> None:
    health = RelayHealth()
    health.record(A, "e1", "invalid: bad signature", now=0)
    health.record(B, "e1", "blocked: not allowed", now=0)
    assert health.targets((A, B), "e1", 10, now=100) == []
    assert health.targets((A, B), "e2", 10, now=100) == [A, B], "other events still go"


def test_unresponsive_relay_is_skipped_after_repeated_failures() -> None:
    health = RelayHealth()
    for _ in range(2):
        health.record(A, "e", "timeout", now=0)
    assert health.targets((A, B), "x", 1, now=0) == [A, B]
    health.record(A, "e", "relay not connected", now=0)
    assert health.targets((A, B), "x", 1, now=0.5) == [B]
    assert health.describe(A, "connected", now=0.5) == "degraded"
    assert health.describe(B, "connected", now=0.5) == "ok"
    assert health.describe(B, "disconnected", now=0.5) == "down"


def test_all_skipped_means_try_them_all_rather_than_none() -> None:
    health = RelayHealth()
    for _ in range(3):
        health.record(A, "e", "timeout", now=0)
    assert health.targets((A,), "x", 1, now=0.1) == [A]


def test_nip11_size_limit_is_respected() -> None:
    health = RelayHealth()
    health.of(A).max_message_length = 1000
    assert health.targets((A, B), "e", 5000, now=0) == [B]
    assert health.targets((A, B), "e", 500, now=0) == [A, B]


def test_duplicate_counts_as_success() -> None:
    health = RelayHealth()
    health.record(A, "e", "timeout", now=0)
    health.record(A, "e", "duplicate: already have it", now=1)
    assert health.of(A).failures == 0


def test_a_size_refusal_lowers_the_relays_limit_per_relay_not_per_event() -> None:
    from p2p_comm.daemon.relays.relay_health import refused_for_size
    from p2p_comm.nostr.nip11 import RelayLimits

    assert refused_for_size("invalid: event too large: 77029")
    assert refused_for_size("message too large (70000 > 65536)")
    assert not refused_for_size("too large for this relay (70000 > 65536 bytes)")  # ours
    assert not refused_for_size("invalid: created_at too early")
    health = RelayHealth()
    a, b = "wss://a", "wss://b"
    # Nothing announced: the limit is just under what was refused.
    assert health.refused_size(a, 50_000) == 49_999
    assert not health.fits(a, 50_000) and health.fits(a, 49_999)
    assert health.refused_size(a, 60_000) == 49_999  # sized before we knew: nothing new
    # Refused although our model said it fits: the model was wrong, by an unknown amount.
    assert health.refused_size(a, 40_000) == 30_000
    assert health.smallest_limit((a, b)) == 30_000 and health.of(b).max_message_length is None
    # An announcement that comes later does not raise what a refusal taught.
    health.of(a).learn(RelayLimits(max_message_length=131_072))
    assert health.of(a).max_message_length == 30_000
    assert any("as too large" in p for p in health.problems(a))
    health.of(b).learn(RelayLimits(max_message_length=131_072))
    assert health.refused_size(b, 77_000) == 57_750


def test_size_refusals_in_other_relays_words_are_recognised() -> None:
    from p2p_comm.daemon.relays.relay_health import refused_for_size

    for reason in (
        "invalid: event too large: 70000",
        "invalid: 280 characters should be enough for anybody",
        "error: content is too long",
        "blocked: event exceeds the size limit",
        "invalid: max event size is 4096",
        "invalid: payload too big",
        "invalid: too large (inferred): no answer to a 38801-byte event",
    ):
        assert refused_for_size(reason), reason
    for reason in ("blocked: kind not allowed", "pow: difficulty 20 needed", "duplicate: exists"):
        assert not refused_for_size(reason), reason


def test_an_inferred_size_refusal_drops_to_what_the_relay_took() -> None:
    health = RelayHealth()
    health.record("wss://r", "e1", None, 0.0, 1059, 3000)
    # Swallowed, not refused in words: no stepping down a quarter per slow timeout.
    assert health.refused_size("wss://r", 77_000, inferred=True) == 4096
    assert health.of("wss://r").size_refused == 77_000
    bigger = RelayHealth()
    bigger.record("wss://r", "e1", None, 0.0, 1059, 20_000)
    assert bigger.refused_size("wss://r", 77_000, inferred=True) == 20_000
    assert bigger.proven("wss://r") == 20_000


def test_refusals_are_counted_but_timeouts_and_disconnections_are_not() -> None:
    health = RelayHealth()
    for reason in (
        "invalid: too large",
        "rate-limited: slow down",
        "timeout",
        "relay not connected",
    ):
        health.record("wss://r", reason, reason, 0.0, 1059)
    assert health.of("wss://r").refused == 2


def test_the_reader_naps_only_while_flooded() -> None:
    """The pump naps after emptying the SDK's channel only above BUSY_RATE notifications a
    second (flood.NAP): a quiet call never waits for it; a flood is read in runs."""
    from p2p_comm.daemon.relays import flood, nostr_io

    async def handler(event: object) -> None:
        return None

    pool = nostr_io.RelayPool(("ws://127.0.0.1:9",), handler)
    rate = flood.BUSY_RATE
    quiet = [pool.busy.flooded(100 + i / (rate * 0.9)) for i in range(rate * 3)]
    assert not any(quiet)
    start = 104.0
    flood = [pool.busy.flooded(start + i / (rate * 3)) for i in range(rate * 9)]
    assert not any(flood[:rate]), "the first BUSY_RATE of a second are not a flood"
    assert all(flood[rate + 1 :]), "past it, and for the whole next second"
    assert pool.busy.flooded(120.0) is False, "the flood ended: the window since was quiet"


class _Url:
    def __init__(self, url: str) -> None:
        self.url = url

    def __str__(self) -> str:
        return self.url


class _Id:
    def __init__(self, value: str) -> None:
        self.value = value

    def to_hex(self) -> str:
        return self.value


class _Event:
    def __init__(self, event_id: str) -> None:
        self._id = event_id

    def id(self) -> _Id:
        return _Id(self._id)

    def content(self) -> str:
        return "x"


class _Message:
    """A relay message whose reading (`as_enum`) is recorded."""

    def __init__(self, read: list[str], label: str, notice: str = "", event: str = "") -> None:
        self.read, self.label, self.notice, self.event_id = read, label, notice, event

    def as_enum(self) -> "_Message":
        self.read.append(self.label)
        return self

    def is_event_msg(self) -> bool:
        return bool(self.event_id)

    @property
    def event(self) -> _Event:
        return _Event(self.event_id)

    @property
    def message(self) -> str:
        return self.notice

    def is_notice(self) -> bool:
        return bool(self.notice)

    def is_auth(self) -> bool:
        return False

    def is_closed(self) -> bool:
        return False

    def is_end_of_stored_events(self) -> bool:
        return False

    def is_ok(self) -> bool:
        return False


class _Note:
    def __init__(self, url: str, message: _Message | None = None, event: str = "") -> None:
        self.relay_url, self.message, self.subscription_id = _Url(url), message, "sub"
        self.event = _Event(event)

    def is_shutdown(self) -> bool:
        return False

    def is_message(self) -> bool:
        return self.message is not None

    def is_new_event(self) -> bool:
        return self.message is None


def test_the_message_that_carried_a_new_event_is_not_read_but_every_other_is() -> None:
    """nostr-sdk tells of a new event, then, next from that relay, of the EVENT message that
    carried it: the pump skips reading that one (a tenth of a flood's cost). Whatever else
    comes is read, also when another relay speaks in between."""
    import asyncio

    from p2p_comm.daemon.relays import nostr_io

    handed: list[str] = []

    async def handler(event: nostr_io.InboundEvent) -> None:
        handed.append(event.id)

    read: list[str] = []
    notes = [
        _Note(A, event="e1"),
        _Note(A, _Message(read, "EVENT e1 from a", event="e1")),  # not read
        _Note(A, event="e2"),
        _Note(B, _Message(read, "NOTICE from b", notice="hello")),  # another relay between
        _Note(A, _Message(read, "EVENT e2 from a", event="e2")),
        _Note(A, _Message(read, "EVENT e2 again from a", event="e2")),  # a copy: read
    ]

    class Stream:
        async def next(self) -> _Note | None:
            return notes.pop(0) if notes else None

    pool = nostr_io.RelayPool((A, B), handler, on_waste=lambda url, weight: None)
    asyncio.run(pool._pump(Stream()))
    assert handed == ["e1", "e2"]
    assert read == ["NOTICE from b", "EVENT e2 from a", "EVENT e2 again from a"]
    assert pool.health.of(B).notice == "hello"
