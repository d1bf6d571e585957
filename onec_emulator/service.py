"""Emulator of the FREESPORT HTTP service that 1C publishes, for tests and demos.

A real HTTP server on 127.0.0.1 that implements docs/onec-http-service.md (GET
/ping, POST /customers, POST /orders, POST /token) with HTTP Basic or bearer
auth, an idempotent ledger of accepted exports and faults that tests schedule::

    with EmulatorService(password="secret") as service:
        service.faults.add("customers", Fault.status(503), times=2)
        client = OneCClient(service.url, StaticCredentials("freesport", "secret"))
        ...
        assert len(service.ledger()) == 1

A test in another process drives it through the admin endpoints (``/_faults``,
``/_ledger``, ``/_requests``, ``/_credentials``, ``/_refuse``, ``/_stall``,
``/_reset``) of a server started with ``python -m onec_emulator.service``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import select
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from http.server import ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any

from onec_emulator.service_faults import Fault, FaultSchedule
from onec_emulator.service_handler import EmulatorRequestHandler
from onec_emulator.service_state import CredentialStore, EmulatorState

__all__ = ["DEFAULT_BASE_PATH", "EmulatorService", "Fault", "FaultSchedule", "main"]

logger = logging.getLogger("onec_emulator.service")

LOOPBACK = "127.0.0.1"
# Base path in 1C's form for a published HTTP service:
# /<infobase>/hs/<root URL of the service>.
DEFAULT_BASE_PATH = "/base/hs/freesport/v1"
DEFAULT_USER = "freesport"
DEFAULT_TOKEN_TTL_S = 3600
PASSWORD_VARIABLE = "ONEC_EMULATOR_PASSWORD"  # noqa: S105 (a variable name)
# How often the accept loop checks for a shutdown request. It bounds how long
# stop(), refuse_connections() and stall_connections() wait for the loop.
SERVE_POLL_INTERVAL_S = 0.05
# Filling the accept queue gives up after this many connections.
MAX_FILLER_CONNECTIONS = 64
# A loopback connect that has not completed after this long is taken as dropped.
FILLER_CONNECT_WAIT_S = 0.2

SERVING = "serving"
REFUSING = "refusing"
STALLED = "stalled"
STOPPED = "stopped"


class EmulatorHTTPServer(ThreadingHTTPServer):
    """Threading HTTP server that tracks its open connections so it can close them."""

    daemon_threads = True

    def __init__(self, port: int, service: EmulatorService) -> None:
        self.service = service
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__((LOOPBACK, port), EmulatorRequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut down every open connection, idle keep-alive ones included."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its handler

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.exception("Request from %s failed in the emulator", client_address)


def fill_accept_queue(port: int) -> list[socket.socket]:
    """Open connections that are never accepted until the listener's queue is full.

    Linux drops a SYN that reaches a listener with a full accept queue, so a
    client's next connect() waits and times out instead of being refused. The
    returned sockets keep the queue full until they are closed.
    """
    fillers: list[socket.socket] = []
    for _ in range(MAX_FILLER_CONNECTIONS):
        filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        filler.setblocking(False)
        fillers.append(filler)
        filler.connect_ex((LOOPBACK, port))
        _, writable, _ = select.select([], [filler], [], FILLER_CONNECT_WAIT_S)
        if not writable:
            return fillers
    close_sockets(fillers)
    raise RuntimeError(
        f"the accept queue of port {port} did not fill after "
        f"{MAX_FILLER_CONNECTIONS} connections, so this system cannot emulate a "
        "connect timeout"
    )


def close_sockets(sockets: Sequence[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


class EmulatorService:
    """The emulator's server, its state and the controls that tests use.

    ``password=None`` generates a password, readable as ``service.password``.
    With ``token_auth`` the contract endpoints accept only bearer tokens from
    POST ``<url>/token``, and without it only HTTP Basic auth.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        user: str = DEFAULT_USER,
        password: str | None = None,
        token_auth: bool = False,
        base_path: str = DEFAULT_BASE_PATH,
        token_ttl_s: int = DEFAULT_TOKEN_TTL_S,
    ) -> None:
        if not user:
            raise ValueError("user must not be empty")
        if not base_path.startswith("/"):
            raise ValueError(f"base_path must start with '/', got {base_path!r}")
        self.password_generated = password is None
        if password is None:
            password = secrets.token_urlsafe(16)
        self.state = EmulatorState(
            base_path=base_path.rstrip("/"),
            token_auth=token_auth,
            credentials=CredentialStore(user, password, token_ttl_s),
        )
        self.faults = self.state.faults
        self._port = port
        self._lock = threading.RLock()
        self._mode = STOPPED
        self._server: EmulatorHTTPServer | None = None
        self._serve_thread: threading.Thread | None = None
        self._fillers: list[socket.socket] = []
        self._resume_timer: threading.Timer | None = None

    # Addresses and credentials.

    @property
    def port(self) -> int:
        if self._port == 0:
            raise RuntimeError("the emulator has not started yet, so it has no port")
        return self._port

    @property
    def url(self) -> str:
        """Base URL of the contract endpoints, for ``OneCClient``."""
        return f"http://{LOOPBACK}:{self.port}{self.state.base_path}"

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    @property
    def admin_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def user(self) -> str:
        return self.state.credentials.user

    @property
    def password(self) -> str:
        return self.state.credentials.password

    @property
    def mode(self) -> str:
        """One of "serving", "refusing", "stalled" and "stopped"."""
        return self._mode

    # Lifetime.

    def start(self) -> EmulatorService:
        with self._lock:
            if self._mode != STOPPED:
                raise RuntimeError(f"the emulator is already {self._mode}")
            self.state.stopping.clear()
            self._server = EmulatorHTTPServer(self._port, self)
            self._port = self._server.server_address[1]
            self._serve()
            self._mode = SERVING
        logger.info("1C emulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and close every connection, ending held requests at once."""
        with self._lock:
            if self._mode == STOPPED:
                return
            self.state.stopping.set()
            self._cancel_resume()
            self._halt()
            self._close_listener()
            self._mode = STOPPED
        logger.info("1C emulator on port %s stopped", self._port)

    def __enter__(self) -> EmulatorService:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # Connection faults, which apply before any request arrives.

    def refuse_connections(self, seconds: float | None = None) -> None:
        """Close the listening socket, so connects are refused, for ``seconds``.

        ``None`` refuses until ``resume_connections()``. Open connections are
        shut down too, so a client's pooled connection cannot bypass the fault.
        """
        with self._lock:
            self._require_started()
            self._cancel_resume()
            self._halt()
            self._close_listener()
            self._mode = REFUSING
            self._schedule_resume(seconds)
        logger.info("1C emulator refuses connections on port %s", self._port)

    def stall_connections(self, seconds: float | None = None) -> None:
        """Keep listening but accept nothing, so connects time out, for ``seconds``.

        Works where a full accept queue drops new SYNs, as Linux does, and
        raises RuntimeError elsewhere.
        """
        with self._lock:
            self._require_started()
            self._cancel_resume()
            self._halt()
            if self._server is None:
                self._server = self._bind()
            self._fillers = fill_accept_queue(self.port)
            self._mode = STALLED
            self._schedule_resume(seconds)
        logger.info("1C emulator stalls connections on port %s", self._port)

    def resume_connections(self) -> None:
        """Accept and serve connections again after a refusal or a stall."""
        with self._lock:
            if self._mode in (STOPPED, SERVING):
                return
            self._cancel_resume()
            self._halt()
            if self._mode == STALLED:
                # The fillers stay in the accept queue until accepted, so a new
                # listening socket with an empty queue takes the old one's place.
                self._close_listener()
            if self._server is None:
                self._server = self._bind()
            self._serve()
            self._mode = SERVING
        logger.info("1C emulator accepts connections again on port %s", self._port)

    # Credentials, ledger and request log.

    def expire_credentials(self, new_password: str | None = None) -> None:
        """Respond 401 until the client refreshes its credentials.

        Every issued token is revoked, so a token client must get a new one.
        ``new_password`` becomes the only password accepted. HTTP Basic auth
        requires it, because the current password would stay valid otherwise.
        """
        if new_password is None and not self.state.token_auth:
            raise ValueError(
                "new_password is required with HTTP Basic auth, because the "
                "current password would stay valid"
            )
        self.state.credentials.expire(new_password)

    def ledger(self) -> list[dict[str, Any]]:
        """Return the accepted exports, one row per endpoint and Idempotency-Key."""
        return self.state.ledger.rows()

    def clear_ledger(self) -> None:
        self.state.ledger.clear()

    def requests(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        """Return the requests that reached contract endpoints, oldest first."""
        return self.state.requests.records(endpoint)

    def clear_requests(self) -> None:
        self.state.requests.clear()

    def reset(self) -> None:
        """Empty the ledger, the request log and the fault queues."""
        self.state.ledger.clear()
        self.state.requests.clear()
        self.state.faults.clear()

    # Server mechanics. Callers hold self._lock.

    def _bind(self) -> EmulatorHTTPServer:
        # NOTE: another process may take the port while connections are refused,
        # and resuming then raises OSError (address in use).
        return EmulatorHTTPServer(self.port, self)

    def _serve(self) -> None:
        assert self._server is not None
        self._serve_thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": SERVE_POLL_INTERVAL_S},
            name=f"onec-emulator-{self.port}",
            daemon=True,
        )
        self._serve_thread.start()

    def _halt(self) -> None:
        """Stop the accept loop, close open connections and the queue fillers."""
        if self._serve_thread is not None and self._server is not None:
            self._server.shutdown()
            self._serve_thread.join()
            self._serve_thread = None
        if self._server is not None:
            self._server.close_connections()
        close_sockets(self._fillers)
        self._fillers = []

    def _close_listener(self) -> None:
        if self._server is not None:
            self._server.server_close()
            self._server = None

    def _require_started(self) -> None:
        if self._mode == STOPPED:
            raise RuntimeError("the emulator is not running; call start() first")

    def _schedule_resume(self, seconds: float | None) -> None:
        if seconds is None:
            return
        self._resume_timer = threading.Timer(seconds, self.resume_connections)
        self._resume_timer.daemon = True
        self._resume_timer.start()

    def _cancel_resume(self) -> None:
        if self._resume_timer is not None:
            self._resume_timer.cancel()
            self._resume_timer = None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m onec_emulator.service",
        description=(
            "Run the 1C HTTP service emulator on 127.0.0.1 until interrupted. "
            "It prints one JSON line with its URLs on standard output."
        ),
    )
    parser.add_argument(
        "--port", type=int, default=0, help="TCP port, or 0 (default) for a free one"
    )
    parser.add_argument(
        "--user", default=DEFAULT_USER, help=f"accepted user (default {DEFAULT_USER})"
    )
    parser.add_argument(
        "--password",
        default=os.environ.get(PASSWORD_VARIABLE),
        help=(
            f"accepted password (default ${PASSWORD_VARIABLE}). Without either, "
            "a generated password is printed in the JSON line"
        ),
    )
    parser.add_argument(
        "--token-auth",
        action="store_true",
        help="take bearer tokens from POST <url>/token instead of HTTP Basic auth",
    )
    parser.add_argument(
        "--base-path",
        default=DEFAULT_BASE_PATH,
        help=f"URL path of the contract endpoints (default {DEFAULT_BASE_PATH})",
    )
    parser.add_argument(
        "--token-ttl",
        type=int,
        default=DEFAULT_TOKEN_TTL_S,
        help=f"token lifetime in seconds (default {DEFAULT_TOKEN_TTL_S})",
    )
    parser.add_argument(
        "--log-level", default="INFO", help="logging level on stderr (default INFO)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    service = EmulatorService(
        port=args.port,
        user=args.user,
        password=args.password,
        token_auth=args.token_auth,
        base_path=args.base_path,
        token_ttl_s=args.token_ttl,
    )
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    service.start()
    announcement: dict[str, Any] = {
        "url": service.url,
        "admin_url": service.admin_url,
        "user": service.user,
    }
    if args.token_auth:
        announcement["token_url"] = service.token_url
    if service.password_generated:
        # A throwaway password of a local test server, printed so it can be used.
        announcement["password"] = service.password
    print(json.dumps(announcement), flush=True)
    try:
        while not stop_requested.wait(0.5):
            pass
    finally:
        service.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
