from p2p_comm.daemon.relay_health import RelayHealth

A, B = "wss://a", "wss://b"


def test_rate_limited_relay_is_skipped_with_growing_backoff() -> None:
    health = RelayHealth()
    health.record(A, "e1", "rate-limited: slow down", now=0)
    assert health.targets((A, B), "e2", 100, now=1) == [B]
    assert health.targets((A, B), "e2", 100, now=3) == [A, B]
    health.record(A, "e2", "rate-limited: again", now=3)
    assert health.of(A).skip_until == 3 + 4
    health.record(A, "e3", None, now=10)
    assert health.of(A).failures == 0 and health.targets((A, B), "e4", 1, now=10) == [A, B]


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
    health.record(A, "e", "rate-limited:", now=0)
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
