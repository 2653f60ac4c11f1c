"""Command-line options shared by ``python -m django_experience.emulator`` and
``manage.py experience_emulator``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any, Protocol

from django_experience.emulator.config import EmulatorConfig
from django_experience.emulator.errors import ConfigError
from django_experience.emulator.server import EmulatorServer


class Writer(Protocol):
    def write(self, text: str, /) -> Any: ...

    def flush(self) -> Any: ...


def _port(text: str) -> int:
    """An argparse type: a port ``bind()`` takes (a larger one raises OverflowError there)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number, 0 to 65535, not {text!r}")
    return port


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=_port, default=8765, help="port (0 picks a free one)")
    parser.add_argument("--config", metavar="FILE",
                        help="JSON file with experiences and audiences")
    parser.add_argument("--organization", metavar="ORG",
                        help="the only organization that exists (default: any)")
    parser.add_argument("--environment", metavar="ENV", nargs="+", action="extend",
                        dest="environments", help="environments of --organization (default: main)")
    parser.add_argument("--log-requests", action="store_true", help="log every request")


def build_server(options: dict[str, Any]) -> EmulatorServer:
    config = EmulatorConfig.from_file(options["config"]) if options.get("config") else None
    if options.get("environments") and not options.get("organization"):
        raise ConfigError("--environment needs --organization")
    return EmulatorServer(
        host=options.get("host") or "127.0.0.1",
        port=int(options["port"]) if options.get("port") is not None else 8765,
        config=config,
        organization=options.get("organization"),
        environments=options.get("environments"),
        log_requests=bool(options.get("log_requests")),
    )


def serve(options: dict[str, Any], out: Writer = sys.stdout, err: Writer | None = None) -> int:
    """Run until interrupted. Returns the process exit status; why it could not start is
    written to ``err`` (standard error by default)."""
    errors = err if err is not None else sys.stderr
    try:
        server = build_server(options)
    except ConfigError as exc:
        _say(errors, f"error: {exc}")
        return 2
    try:
        # Listen before printing so the printed URL is the real one (port 0 picks a free
        # port), and serve only after printing: whoever waits for the port also sees the banner.
        server.bind()
    except OSError as exc:
        _say(errors, f"error: cannot listen on {server.host}:{server.port}: {exc.strerror}")
        return 1
    scope = "any organization"
    if options.get("organization"):
        envs = ", ".join(options.get("environments") or ["main"])
        scope = f"organization {options['organization']} ({envs})"
    config = server.state.config
    _say(out, f"Experience API emulator on {server.url} for {scope}; "
              f"{len(config.experiences)} experiences, {len(config.audiences)} audiences. "
              "Ctrl-C stops it.")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        _say(out, "Emulator stopped.")
    return 0


def _say(out: Writer, text: str) -> None:
    out.write(text + "\n")
    out.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m django_experience.emulator",
        description="Local in-memory emulator of the Experience API.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return serve(vars(args))
