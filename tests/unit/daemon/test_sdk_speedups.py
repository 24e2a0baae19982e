"""The string-passing speed-up must change speed only, never bytes."""

import linecache
import os
import random
from datetime import timedelta
from typing import Any

import nostr_sdk as ns
import pytest

from p2p_comm import sdk_speedups


def test_patch_applies_and_round_trips_every_size() -> None:
    assert sdk_speedups.apply() is True
    assert sdk_speedups.apply() is True, "applying twice is harmless"
    sender, receiver = ns.Keys.generate(), ns.Keys.generate()
    rng = random.Random(7)
    for size in (0, 1, 15, 16, 17, 1000, 12_000):  # NIP-44 caps plaintext at 65,535 bytes
        text = "".join(rng.choices('aé€😀\n"\\', k=size))
        secret = ns.nip44_encrypt(
            sender.secret_key(), receiver.public_key(), text or "x", ns.Nip44Version.V2
        )
        assert ns.nip44_decrypt(receiver.secret_key(), sender.public_key(), secret) == (text or "x")
        rumor = ns.EventBuilder(ns.Kind(25714), text).finalize_unsigned(sender.public_key())
        wrap = ns.nip59_make_gift_wrap(sender, receiver.public_key(), rumor)
        again = ns.Event.from_json(wrap.as_json())
        gift = ns.UnwrappedGift.from_gift_wrap(receiver, again)
        assert gift.rumor().content() == text
        assert gift.sender().to_hex() == sender.public_key().to_hex()


def test_binary_content_survives() -> None:
    sdk_speedups.apply()
    blob = os.urandom(3000).hex()
    event = ns.EventBuilder(ns.Kind(1), blob).finalize(ns.Keys.generate())
    assert ns.Event.from_json(event.as_json()).content() == blob


def test_async_calls_ready_at_once_skip_the_thread_safe_hand_over() -> None:
    """An awaited SDK call whose answer is there at the first poll resolves on the loop's
    own thread, without a wake-up through the loop's pipe; one that has to wait for Rust's
    threads is still handed over thread-safely, and both give the right answer."""
    import asyncio

    from p2p_comm.relay import build_relay

    async def main() -> tuple[int, int, int]:
        loop = asyncio.get_running_loop()
        ns.uniffi_set_event_loop(loop)
        sdk_speedups.apply()
        _relay, url = await build_relay("127.0.0.1", 0, None)
        client = ns.ClientBuilder().build()
        await client.add_relay(ns.RelayUrl.parse(url))
        await client.connect()
        handed_over = 0
        original = loop.call_soon_threadsafe

        def counting(*args: object, **kwargs: object) -> object:
            nonlocal handed_over
            handed_over += 1
            return original(*args, **kwargs)  # type: ignore[arg-type]

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        try:
            for _ in range(50):
                assert len(await client.relays()) == 1  # answered at the first poll
            quick, waited = handed_over, sdk_speedups.waits()
            keys = ns.Keys.generate()
            sent = await client.send_event(
                ns.EventBuilder(ns.Kind(1), "hello").finalize(keys)
            )  # waits for the relay's OK: Rust's threads wake us
            fetched = await client.fetch_events(
                ns.ReqTarget.auto([ns.Filter().author(keys.public_key())]), timedelta(seconds=5)
            )
        finally:
            loop.call_soon_threadsafe = original  # type: ignore[method-assign]
            await client.shutdown()
        assert sent.success, sent.failed
        # The relay's pump reads this count to learn that a read had to wait.
        assert sdk_speedups.waits() - waited == handed_over - quick
        return quick, handed_over, len(fetched)

    quick, total, found = asyncio.run(main())
    assert quick == 0, f"{quick} of 50 ready answers went through the loop's wake-up pipe"
    assert total > 0 and found == 1


def test_applying_keeps_no_source_in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check reads the loop's code, not the bindings' 1.5 MB of source: inspect.getsource
    left every line of it in linecache for the daemon's lifetime (4 MiB of private memory)."""
    from nostr_sdk import nostr_sdk as bindings

    # The slow loop as the bindings have it, from their file (an earlier test patched it).
    loop = (
        "def write(self, value):\n"
        "    with self._reserve(len(value)):\n"
        "        for i, byte in enumerate(value):\n"
        "            self.rbuf.data[self.rbuf.len + i] = byte\n"
    )
    namespace: dict[str, Any] = {}
    exec(compile(loop, bindings.__file__, "exec"), namespace)
    monkeypatch.setattr(bindings._UniffiRustBufferBuilder, "write", namespace["write"])
    linecache.cache.pop(bindings.__file__, None)
    assert sdk_speedups.apply() is True
    assert bindings.__file__ not in linecache.cache


def _rss_kib() -> int:
    with open("/proc/self/status") as handle:
        line = next(row for row in handle if row.startswith("VmRSS"))
    return int(line.split()[1])


def test_calls_into_rust_give_the_same_values_and_errors() -> None:
    """Speed-up 3: a zero-filled call status, the checker only when Rust set a code,
    returned strings and compound values read without a context manager, and strings
    passed in a buffer of their size. The same values, the same errors, and every buffer
    still freed."""
    from nostr_sdk import nostr_sdk as bindings

    sdk_speedups.apply()
    assert getattr(bindings._uniffi_rust_call_with_error, "p2p_fast", False)
    keys = ns.Keys.generate()
    for text in ("", "a", 'é€😀\n"\\', "x" * 70_000):
        event = ns.EventBuilder(ns.Kind(1), text).tags([ns.Tag.parse(["t", text])]).finalize(keys)
        assert event.content() == text
        assert [tag.to_vec() for tag in event.tags()] == [["t", text]]  # compound
        assert event.author().to_hex() == keys.public_key().to_hex()
        assert event.verify()
    with pytest.raises(ns.NostrSdkError):  # an error Rust returns is still raised
        ns.PublicKey.parse("not a key")
    with pytest.raises(ns.NostrSdkError):
        ns.nip44_decrypt(keys.secret_key(), keys.public_key(), "not a payload")
    # Every buffer Rust returned is freed: 100,000 reads of a 4 KB string leak nothing
    # (400 MB if they did).
    event = ns.EventBuilder(ns.Kind(1), "y" * 4000).finalize(keys)
    before = _rss_kib()
    for _ in range(100_000):
        event.content()
    assert _rss_kib() - before < 50_000
    # And every string passed to Rust in a buffer of its size, which Rust frees.
    before = _rss_kib()
    for _ in range(100_000):
        ns.EventBuilder(ns.Kind(1), "z" * 4000)
    assert _rss_kib() - before < 50_000


def test_bindings_of_another_shape_are_left_as_they_are() -> None:
    """Speed-up 3 checks the pieces it replaces; where one is missing it changes nothing (a
    later nostr-sdk, generated by a newer uniffi). Fresh bindings in a process each: this
    one's are patched already."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from nostr_sdk import nostr_sdk as b\n"
        "from p2p_comm import sdk_speedups\n"
        "if sys.argv[1]: delattr(b, sys.argv[1])\n"
        "before = b._uniffi_rust_call_with_error\n"
        "print(sdk_speedups._patch_calls(b), b._uniffi_rust_call_with_error is before)\n"
    )
    for missing, expected in (("", "True False"), ("_UniffiRustBufferStream", "False True")):
        done = subprocess.run(
            [sys.executable, "-c", probe, missing], capture_output=True, text=True, check=True
        )
        assert done.stdout.strip() == expected, (missing, done.stdout, done.stderr)
