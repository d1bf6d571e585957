"""Command line of the emulator: ``python -m onec_emulator push URL PACKAGE...``.

Exit codes: 0 when the exchange succeeded, 1 when it failed, 2 on invalid
arguments.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from onec_emulator.client import ExchangeClient, print_transcript

PASSWORD_ENV = "ONEC_PASSWORD"  # noqa: S105 (the variable name, not a password)
EXIT_SUCCESS = 0
EXIT_FAILURE = 1
DEFAULT_CONNECT_TIMEOUT_S = 5.0


def positive_int(text: str) -> int:
    """Parse a whole number greater than 0 for argparse."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, not {value}")
    return value


def non_negative_float(text: str) -> float:
    """Parse a number of seconds that is 0 or more for argparse."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Build the parser of the ``push`` command."""
    parser = argparse.ArgumentParser(
        prog="python -m onec_emulator",
        description=(
            "Play 1C:Enterprise in the 1C site-exchange HTTP protocol "
            "(type=catalog) against a site's exchange URL."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    push = commands.add_parser(
        "push",
        help="upload an exchange package and ask the site to import it",
        description=(
            "Run checkauth, init, file uploads and an import of every XML file "
            "outside import_files/, then print one line per request."
        ),
    )
    push.add_argument(
        "url", help="exchange URL, for example http://127.0.0.1:8000/exchange/1c/"
    )
    push.add_argument(
        "packages",
        nargs="+",
        metavar="PACKAGE",
        help=(
            "package folder, or files and folders. A folder's files are named "
            "relative to it, and a file by its own name"
        ),
    )
    _add_session_arguments(push)
    _add_upload_arguments(push)
    _add_step_arguments(push)
    push.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log each request to stderr as it happens",
    )
    return parser


def _add_session_arguments(push: argparse.ArgumentParser) -> None:
    push.add_argument("--user", required=True, help="user name for HTTP Basic auth")
    push.add_argument(
        "--password",
        help=f"password for HTTP Basic auth (default: ${PASSWORD_ENV}, which "
        "keeps it out of the process list)",
    )
    push.add_argument(
        "--no-cookies",
        dest="use_cookies",
        action="store_false",
        help="send no Cookie header, and pass sessid= in the query of every "
        "request after checkauth instead",
    )
    push.add_argument(
        "--auth-on-checkauth-only",
        dest="auth_every_request",
        action="store_false",
        help="send HTTP Basic auth only with mode=checkauth (default: with "
        "every request)",
    )
    push.add_argument(
        "--request-timeout",
        type=non_negative_float,
        default=60.0,
        metavar="S",
        help="maximum seconds to wait for the response to one request "
        "(default: %(default)s)",
    )


def _add_upload_arguments(push: argparse.ArgumentParser) -> None:
    zip_options = push.add_mutually_exclusive_group()
    zip_options.add_argument(
        "--zip",
        dest="use_zip",
        action="store_const",
        const=True,
        help="upload the package as one zip when init returns zip=yes "
        "(the default also does this)",
    )
    zip_options.add_argument(
        "--no-zip",
        dest="use_zip",
        action="store_const",
        const=False,
        help="upload files one by one even when init returns zip=yes",
    )
    push.add_argument(
        "--chunk-size",
        type=positive_int,
        metavar="BYTES",
        help="maximum bytes per mode=file POST when smaller than the site's "
        "file_limit (default: file_limit)",
    )
    push.add_argument(
        "--protocol-version",
        default="3.1",
        metavar="VERSION",
        help="version= sent with mode=init (default: %(default)s). An empty "
        "string sends none",
    )


def _add_step_arguments(push: argparse.ArgumentParser) -> None:
    push.add_argument(
        "--complete", action="store_true", help="send mode=complete at the end"
    )
    push.add_argument(
        "--deactivate",
        action="store_true",
        help="send mode=deactivate after the imports, before any mode=complete",
    )
    push.add_argument(
        "--poll-interval",
        type=non_negative_float,
        default=0.2,
        metavar="S",
        help="seconds between requests while the site returns progress "
        "(default: %(default)s)",
    )
    push.add_argument(
        "--timeout",
        type=non_negative_float,
        default=600.0,
        metavar="S",
        help="maximum seconds to poll one mode=import or mode=deactivate "
        "that returns progress (default: %(default)s)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_url(parser, args.url)

    password = args.password
    if password is None:
        password = os.environ.get(PASSWORD_ENV)
    if password is None:
        parser.error(f"missing password: pass --password or set ${PASSWORD_ENV}")

    packages = [Path(item) for item in args.packages]
    missing = [str(path) for path in packages if not path.exists()]
    if missing:
        parser.error(f"package path not found: {', '.join(missing)}")

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    client = ExchangeClient(
        args.url,
        args.user,
        password,
        use_cookies=args.use_cookies,
        use_zip=args.use_zip,
        chunk_size=args.chunk_size,
        version=args.protocol_version or None,
        poll_interval=args.poll_interval,
        import_timeout=args.timeout,
        request_timeout=(DEFAULT_CONNECT_TIMEOUT_S, args.request_timeout),
        auth_every_request=args.auth_every_request,
    )
    result = client.push(packages, complete=args.complete, deactivate=args.deactivate)
    print_transcript(result, sys.stdout)
    return EXIT_SUCCESS if result.ok else EXIT_FAILURE


def _check_url(parser: argparse.ArgumentParser, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        parser.error(
            f"invalid exchange URL {url!r}: expected http:// or https:// and a host"
        )
