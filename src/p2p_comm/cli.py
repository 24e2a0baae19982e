"""``p2p``: the command-line client, a byte pipe to the daemon.

The daemon parses the command line and renders its text or JSON (daemon/agent/argv.py); this
process sends it the argv (and standard input when a command reads ``-``) and copies back
the bytes and the exit code (`client.pipe`). It imports neither json nor argparse, asyncio
nor nostr_sdk on that path: agents run it hundreds of times per task. The commands that must
work without a daemon (``--help``, ``daemon ...``, ``relay``, ``demo``, ``skill``, ``mcp``) run
here, with argparse.
"""

from __future__ import annotations

import os
import sys

from .client import P2PError, pipe
from .codes import EXIT_DAEMON, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_PIPE, EXIT_USAGE
from .locations import HomeError, home_str, socket_path

TYPE_CHECKING = False  # not `from typing import`: typing costs the CLI ~4 ms

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from typing import Any

    from .paths import HomePaths


# Ctrl-C: the daemon marks events read only once the CLI has printed them, so none are lost.
_INTERRUPTED = "interrupted (Ctrl-C); events not printed stay unread."

# Words that may make a command line one of those run here (any doubt is settled by argparse;
# the daemon also sends back what it finds to be local).
_MAYBE_LOCAL = frozenset({"daemon", "skill", "relay", "mcp", "demo", "-h", "--help"})


class CliError(Exception):
    """A user-facing failure: one sentence and an exit code."""

    def __init__(self, message: str, code: str = "error", exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.exit_code = exit_code


class _RunLocally(Exception):
    """The command line turned out to be one the CLI runs itself."""


class Home:
    """The home as strings; the full `HomePaths` (and pathlib) only for commands that need it."""

    __slots__ = ("dir", "socket")

    def __init__(self, directory: str) -> None:
        self.dir = directory
        self.socket = socket_path(directory)

    @property
    def paths(self) -> HomePaths:
        from pathlib import Path

        from .paths import HomePaths

        return HomePaths(Path(self.dir))


if TYPE_CHECKING:
    Command = Callable[[argparse.Namespace, Home], Any]


# The byte pipe ----------------------------------------------------------------------


def _write(stream: Any, data: bytes) -> None:
    if stream is None:  # started with that descriptor closed: nobody reads it
        raise BrokenPipeError()
    buffer = getattr(stream, "buffer", None)
    if buffer is None:  # a text-only stream (tests capture output in StringIO)
        stream.write(data.decode(errors="replace"))
        stream.flush()
        return
    stream.flush()  # whatever went through the text layer first stays first
    buffer.write(data)
    buffer.flush()


_written = [False]  # whether anything went to standard output yet (one document at most)


def _out(data: bytes) -> None:
    _written[0] = True
    _write(sys.stdout, data)


def _err(data: bytes) -> None:
    if sys.stderr is not None:
        _write(sys.stderr, data)


def _read_stdin() -> bytes:
    stream = sys.stdin
    if stream is None:  # started with standard input closed
        return b""
    try:
        buffer = getattr(stream, "buffer", None)
        if buffer is not None:
            return bytes(buffer.read())
        return str(stream.read()).encode("utf-8", "surrogatepass")
    except OSError as exc:
        raise P2PError("error", f"cannot read standard input: {exc.strerror or exc}.") from None


def _check_here(argv: list[str]) -> None:
    """Before a daemon is started for it, a wrong command line is said (the daemon would say
    the same, but need not be started for that)."""
    from .daemon.agent.argv import UsageError, plan

    try:
        cwd = os.getcwd()
    except OSError:
        cwd = ""
    try:
        planned = plan([w.encode("utf-8", "surrogatepass") for w in argv], cwd, in_daemon=False)
    except UsageError as exc:
        raise CliError(exc.message, "usage", EXIT_USAGE) from None
    if planned.local:
        raise _RunLocally()


def _piped(argv: list[str]) -> int | None:
    """The command run by the daemon; None when it is one for the CLI itself."""
    try:
        return pipe(home_str(), argv, _out, _err, _read_stdin, lambda: _check_here(argv))
    except P2PError as exc:
        raise CliError(
            exc.message, exc.code, EXIT_DAEMON if exc.unreachable else EXIT_ERROR
        ) from None


# Local commands -----------------------------------------------------------------------


def cmd_daemon(args: argparse.Namespace, home: Home) -> Any:
    from . import launcher, rpc

    if args.lines < 1:
        raise CliError("--lines must be at least 1.", "usage", EXIT_USAGE)
    try:
        if args.action == "status":
            # Never starts the daemon: it says whether one runs (exit 3 when not).
            if not launcher.lock_held(home.paths):
                return {"daemon": "not running", "_exit": EXIT_DAEMON}
            return {"daemon": "running", "started": False, **rpc.request(home.socket, "ping")}
        if args.action == "start":
            already = launcher.lock_held(home.paths)
            launcher.ensure_running(home.paths)
            return {
                "daemon": "running",
                "started": not already,
                **rpc.request(home.socket, "ping"),
            }
        if args.action == "stop":
            return {"daemon": "stopped", "was_running": launcher.stop(home.paths)}
        if args.action == "restart":
            _check_config(home.paths)  # before anything is stopped: a bad one stops nothing
            launcher.stop(home.paths)
            launcher.start(home.paths)
            return {"daemon": "running", "started": True, **rpc.request(home.socket, "ping")}
        return {"log": os.fspath(home.paths.log), "lines": _tail(home.paths, args.lines)}
    except launcher.LaunchError as exc:
        raise CliError(str(exc), "daemon_unavailable", EXIT_DAEMON) from None
    except rpc.RpcError as exc:
        unreachable = P2PError(exc.code, exc.message).unreachable
        raise CliError(exc.message, exc.code, EXIT_DAEMON if unreachable else EXIT_ERROR) from None
    except OSError as exc:
        message = (
            f"cannot use the home {home.dir} ({exc.strerror or exc}); make it writable"
            " or point P2P_HOME elsewhere."
        )
        raise CliError(message, "daemon_unavailable", EXIT_DAEMON) from None


def _check_config(paths: HomePaths) -> None:
    """The config a daemon started from here would read (the file and this environment):
    refused, with the running daemon left running, if it cannot start one."""
    from . import launcher
    from .config import ConfigError, load_config

    try:
        load_config(paths.config)
    except ConfigError as exc:
        message = str(exc)
        if launcher.lock_held(paths):
            message = (
                f"{message.rstrip('.')}; the running daemon was left running: fix that and"
                " run 'p2p daemon restart' again."
            )
        raise CliError(message, "config", EXIT_DAEMON) from None


def _tail(paths: HomePaths, count: int) -> list[str]:
    try:
        with open(paths.log, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 256 * count))
            lines = handle.read().decode(errors="replace").splitlines()
    except FileNotFoundError:
        raise CliError(f"no daemon log yet at {paths.log}.", "not_found") from None
    return lines[-count:]


def cmd_skill(args: argparse.Namespace, home: Home) -> Any:
    """Copy the packaged SKILL.md where OpenClaw looks for skills."""
    from importlib import resources

    target = args.dir or os.path.join(home.dir, "skills", "p2p-comm")
    text = resources.files("p2p_comm").joinpath("skill/SKILL.md").read_text(encoding="utf-8")
    from .atomicfile import replace_file

    os.umask(0o077)  # like every file we write under the home: the owner's alone
    try:
        os.makedirs(target, exist_ok=True)
        path = os.path.join(target, "SKILL.md")
        # --dir may be a shared directory: no fixed temporary name another user could plant
        # as a symlink, and an older, looser copy is replaced by an owner-only one.
        replace_file(path, text.encode("utf-8"), 0o600)
    except OSError as exc:
        raise CliError(f"cannot write the skill to {target}: {exc.strerror}.") from None
    return {"installed": path}


def cmd_relay(args: argparse.Namespace, home: Home) -> Any:
    if not 0 <= args.port <= 65535:
        raise CliError("--port must be from 0 to 65535 (0 picks a free port).", "usage", EXIT_USAGE)
    from . import relay

    sys.exit(relay.main(args.host, args.port, args.db, json_output=args.json))


def cmd_mcp(args: argparse.Namespace, home: Home) -> Any:
    from importlib.util import find_spec

    if find_spec("mcp") is None:
        raise CliError(
            "p2p mcp needs the MCP SDK, which is not installed: pip install 'p2p-comm[mcp]'.",
            "missing_dependency",
        )
    try:
        from . import mcp_server
    except ImportError as exc:  # installed but broken (a part missing, a wrong version)
        raise CliError(
            f"p2p mcp needs the MCP SDK, which cannot be imported ({exc}):"
            " pip install 'p2p-comm[mcp]'.",
            "missing_dependency",
        ) from None

    sys.exit(mcp_server.main(home.dir))


def cmd_demo(args: argparse.Namespace, home: Home) -> Any:
    from . import demo

    sys.exit(demo.main(json_output=args.json))


# Entry --------------------------------------------------------------------------------

_LOCAL: dict[str, Command] = {
    "daemon": cmd_daemon,
    "skill": cmd_skill,
    "relay": cmd_relay,
    "mcp": cmd_mcp,
    "demo": cmd_demo,
}


def _emit(command: str, result: Any, as_json: bool) -> int:
    """Output of a command run here (the daemon renders everything else)."""
    import json

    from . import textout
    from .schema import document

    exit_code = result.pop("_exit", EXIT_OK) if isinstance(result, dict) else EXIT_OK
    if as_json:
        payload = document(result if isinstance(result, dict) else {"result": result})
        text = json.dumps(payload, ensure_ascii=False, indent=None)
    else:
        text = textout.render(command, result)
    _out((text + "\n").encode())
    return int(exit_code)


def _check_utf8(argv: list[str]) -> None:
    """Bytes that are not UTF-8 reach us as lone surrogates; say so instead of failing later."""
    for number, word in enumerate(argv, 1):
        try:
            word.encode()
        except UnicodeEncodeError:
            raise CliError(
                f"argument {number} is not valid UTF-8 text.", "usage", EXIT_USAGE
            ) from None


def _with_site() -> None:
    """What `site` sets up (every package of the environment, its .pth files), for the
    commands run here: the `p2p` script `shim.py` writes starts Python without it."""
    if sys.flags.no_site and "site" not in sys.modules:
        import site

        site.main()


def _local(argv: list[str]) -> int:
    """A command line run here: argparse, then a local command or, after all, the pipe."""
    from .cli_args import UsageError, parse

    _with_site()
    _check_utf8(argv)
    try:
        args = parse(argv)  # `--help` prints and exits here
    except UsageError as exc:
        raise CliError(exc.message, "usage", EXIT_USAGE) from None
    command: str = getattr(args, "command", None) or ""
    func = _LOCAL.get(command)
    if func is None:
        code = _piped(argv) if command else None
        if code is None:
            raise CliError("a command is needed (see 'p2p --help').", "usage", EXIT_USAGE)
        return code
    args.json = getattr(args, "json", False)
    name = command if command != "daemon" else f"daemon {args.action}"
    return _emit(name, func(args, Home(home_str())), args.json)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:
        return _pipe_closed()


def _pipe_closed() -> int:
    """Our reader went away: nothing left to say to it, and no 'Exception ignored' noise at
    exit (Python flushes stdout once more then; point it at /dev/null)."""
    if sys.stdout is None:  # started with no standard output at all (`p2p inbox >&-`)
        return EXIT_PIPE
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # AttributeError: a stream with no fileno
        pass
    return EXIT_PIPE


def _main(argv: list[str]) -> int:
    as_json = "--json" in argv
    try:
        if _MAYBE_LOCAL.isdisjoint(argv):
            try:
                code = _piped(argv)
            except _RunLocally:
                code = None
            if code is not None:
                return code
        return _local(argv)
    except CliError as exc:
        _error(exc.code, exc.message, as_json)
        return exc.exit_code
    except HomeError as exc:
        _error("config", str(exc), as_json)
        return EXIT_DAEMON
    except KeyboardInterrupt:
        if not _written[0]:  # one document per run: said only if nothing was printed yet
            _error("interrupted", _INTERRUPTED, as_json)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        raise
    except OSError as exc:  # the machine refused something: name what, in one sentence
        where = f" ({exc.filename})" if exc.filename else ""
        _error("os_error", f"{exc.strerror or exc}{where}.", as_json)
        return EXIT_ERROR
    except Exception as exc:  # a bug of ours: still one line, never a traceback
        message = f"internal error ({type(exc).__name__}: {exc}); see 'p2p daemon logs'."
        _error("internal", message, as_json)
        return EXIT_ERROR


def _error(code: str, message: str, as_json: bool) -> None:
    if as_json:
        import json  # only on this path: a failure to reach the daemon, or a local command

        from .schema import error_document

        print(json.dumps(error_document(code, message)))
        sys.stdout.flush()
    else:
        print(f"error: {message}", file=sys.stderr)
