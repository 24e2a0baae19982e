"""Made ``gift_wraps.json`` once; kept to show how, not to be re-run by tests.

Wraps are randomised (one-time key, NIP-44 nonce, seal timestamp), so running this again
writes different but equally valid vectors; the committed file is the golden one.

    cd tests/unit/nostr/vectors && ../../../../.venv/bin/python make_gift_wraps.py > gift_wraps.json
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import nostr_sdk as ns

from p2p_comm.nostr import kinds, nip59


def _secret(label: str) -> str:
    # Fixed, reproducible test keys: never used anywhere but these vectors.
    return hashlib.sha256(f"p2p-comm test vector {label}".encode()).hexdigest()


def main() -> None:
    sender = ns.Keys.parse(_secret("sender"))
    receiver = ns.Keys.parse(_secret("receiver"))
    impostor = ns.Keys.parse(_secret("impostor"))
    bystander = ns.Keys.parse(_secret("bystander"))
    me, you = sender.public_key().to_hex(), receiver.public_key().to_hex()
    call = json.dumps(
        {"v": 1, "type": "message", "call": "0f" * 16, "seq": 3, "ack": 2, "body": {"text": "hi"}},
        separators=(",", ":"),
    )
    cases = []
    for name, kind, content, created_at, tags in [
        ("call message", kinds.CALL, call, 1795300000, []),
        (
            "private message, non-ASCII",
            kinds.PRIVATE_MESSAGE,
            'Grüße \u2728\n"ok"',
            1795300100,
            [["p", you]],
        ),
        ("empty content", kinds.CALL, "", 1795300200, []),
    ]:
        rumor = nip59.make_rumor(me, kind, content, created_at, tags)
        event = nip59.wrap(sender, you, rumor, created_at - 7)
        cases.append(
            {
                "name": name,
                "wrap": json.loads(event.as_json()),
                "expect": {
                    "sender": me,
                    "kind": kind,
                    "content": content,
                    "created_at": created_at,
                    "rumor_id": rumor.id().to_hex(),
                },
            }
        )
    # Forged: a rumor claiming the sender as author, sealed and signed by the impostor.
    forged_rumor = nip59.make_rumor(me, kinds.CALL, call, 1795300300)
    seal = ns.nip59_make_seal(impostor, receiver.public_key(), forged_rumor)
    one_time = ns.Keys.generate()
    content = ns.nip44_encrypt(
        one_time.secret_key(), receiver.public_key(), seal.as_json(), ns.Nip44Version.V2
    )
    forged = (
        ns.EventBuilder(ns.Kind(kinds.GIFT_WRAP), content)
        .tags([ns.Tag.public_key(receiver.public_key())])
        .custom_created_at(ns.Timestamp.from_secs(1795300300))
        .finalize(one_time)
    )
    # A genuine wrap for someone else.
    elsewhere = nip59.wrap(
        sender,
        bystander.public_key().to_hex(),
        nip59.make_rumor(me, kinds.CALL, call, 1795300400),
        1795300400,
    )
    # A rumor whose claimed id is not the hash of its fields (the SDK does not check it).
    honest = nip59.make_rumor(me, kinds.CALL, call, 1795300500)
    bad_id = nip59.wrap(sender, you, dataclasses.replace(honest, id="00" * 32), 1795300500)
    document = {
        "about": "Gift wraps made once by make_gift_wraps.py with nostr-sdk 0.45.1.",
        "keys": {
            name: {"secret": keys.secret_key().to_hex(), "public": keys.public_key().to_hex()}
            for name, keys in [
                ("sender", sender),
                ("receiver", receiver),
                ("impostor", impostor),
                ("bystander", bystander),
            ]
        },
        "valid": cases,
        "forged": json.loads(forged.as_json()),
        "for_bystander": json.loads(elsewhere.as_json()),
        "bad_rumor_id": json.loads(bad_id.as_json()),
    }
    print(json.dumps(document, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
