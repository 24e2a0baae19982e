import stat
from pathlib import Path

import yaml

from tests.conftest import AgentFactory


def test_skill_install_writes_parsable_front_matter(
    make_agent: AgentFactory, tmp_path: Path
) -> None:
    agent = make_agent("alice", ["ws://127.0.0.1:9"])
    target = tmp_path / "skills" / "p2p-comm"
    result = agent.json("skill", "install", "--dir", str(target))
    skill = Path(result["installed"])
    assert skill == target / "SKILL.md"
    text = skill.read_text()
    _, front, body = text.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["name"] == "p2p-comm" and meta["description"]
    assert meta["metadata"]["openclaw"]["requires"]["bins"] == ["p2p"]
    # No installer naming a package-index entry that does not exist (issue 12): the body
    # says how to install from a checkout.
    assert "install" not in meta["metadata"]["openclaw"]
    assert "python3 -m pip install ." in body and "~/.openclaw/p2p-files" not in body
    for command in ("p2p call", "p2p answer accept", "p2p escalate", "p2p end", "--json"):
        assert command in body
    assert agent.daemon_pid() is None, "installing the skill needs no daemon"


def test_skill_install_defaults_to_the_home(make_agent: AgentFactory) -> None:
    agent = make_agent("alice", ["ws://127.0.0.1:9"])
    assert agent.run("skill", "install").stdout.startswith("skill installed: ")
    assert (agent.home / "skills" / "p2p-comm" / "SKILL.md").exists()


def test_repository_skill_is_the_packaged_one() -> None:
    root = Path(__file__).resolve().parents[2]
    assert (root / "skill" / "SKILL.md").read_text() == (
        root / "src" / "p2p_comm" / "skill" / "SKILL.md"
    ).read_text()


def test_skill_install_does_not_follow_a_planted_symlink(
    make_agent: AgentFactory, tmp_path: Path
) -> None:
    """Another local user plants the installer's temporary name (`SKILL.md.tmp`, the old
    fixed one) as a symlink to a file of ours in a shared directory, and SKILL.md itself as
    another. The installer must write neither victim nor chmod it.

    This runs as one user (root here): following a symlink in a directory that is not
    world-writable and sticky does not depend on who owns the link, so a second Unix user
    would change nothing in what the installer does.
    """
    agent = make_agent("alice", ["ws://127.0.0.1:9"])
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    victims = []
    for planted in ("SKILL.md.tmp", ".SKILL.md.tmp", "SKILL.md"):
        victim = tmp_path / f"victim-of-{planted}"
        victim.write_text(f"my own {planted} victim\n")
        victim.chmod(0o644)
        (shared / planted).symlink_to(victim)
        victims.append(victim)
    result = agent.json("skill", "install", "--dir", str(shared))
    skill = shared / "SKILL.md"
    assert result["installed"] == str(skill)
    for victim in victims:
        assert victim.read_text() == f"my own {victim.name.removeprefix('victim-of-')} victim\n"
        assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert not skill.is_symlink()
    assert stat.S_IMODE(skill.stat().st_mode) == 0o600
    packaged = Path(__file__).resolve().parents[2] / "src" / "p2p_comm" / "skill" / "SKILL.md"
    assert skill.read_text() == packaged.read_text()
    leftovers = {p.name for p in shared.iterdir()} - {"SKILL.md", "SKILL.md.tmp", ".SKILL.md.tmp"}
    assert not leftovers, "no temporary file is left behind"
