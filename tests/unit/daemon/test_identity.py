import json
import os
import stat
from pathlib import Path

import pytest

from p2p_comm.identity import IdentityError, load_or_create


def test_created_on_first_use_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "p2p-identity.json"
    identity, created = load_or_create(path)
    assert created
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert identity.npub.startswith("npub1")
    assert len(identity.public_hex) == 64
    assert not list(tmp_path.glob(".*tmp")), "no temporary file is left behind"


def test_loaded_again_with_the_same_key(tmp_path: Path) -> None:
    path = tmp_path / "p2p-identity.json"
    first, _ = load_or_create(path)
    second, created = load_or_create(path)
    assert not created
    assert second.npub == first.npub


def test_corrupt_file_is_an_error_and_is_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "p2p-identity.json"
    path.write_text('{"secret_key": "not-a-key-abcdef"}')
    os.chmod(path, 0o600)
    with pytest.raises(IdentityError, match="corrupt") as info:
        load_or_create(path)
    assert "not-a-key" not in str(info.value)
    assert path.read_text() == '{"secret_key": "not-a-key-abcdef"}'


def test_error_never_quotes_the_secret(tmp_path: Path) -> None:
    path = tmp_path / "p2p-identity.json"
    load_or_create(path)
    secret = json.loads(path.read_text())["secret_key"]
    document = json.loads(path.read_text())
    document["public_key"] = "00" * 32
    path.write_text(json.dumps(document))
    with pytest.raises(IdentityError) as info:
        load_or_create(path)
    assert "inconsistent" in str(info.value)
    assert secret not in str(info.value)


def test_file_open_to_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p2p-identity.json"
    load_or_create(path)
    os.chmod(path, 0o644)
    with pytest.raises(IdentityError, match="chmod 600"):
        load_or_create(path)
