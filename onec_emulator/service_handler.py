"""HTTP request handler of the 1C HTTP service emulator.

Contract requests go through four steps: read the body, apply the next queued
fault of the endpoint, check the credentials, then run the endpoint from
``service_contract``. A queued fault therefore applies whatever the credentials.
Admin requests (paths starting with ``/_``) need no credentials and never get
faults; the emulator listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from onec_emulator.service_contract import (
    CONTRACT_ROUTES,
    ContractError,
    ContractRequest,
    Reply,
    parse_json_object,
)
from onec_emulator.service_faults import MAX_HOLD_S, Fault

if TYPE_CHECKING:
    from onec_emulator.service import EmulatorService

logger = logging.getLogger("onec_emulator.service")

MAX_BODY_BYTES = 1024 * 1024
# SO_LINGER on with a zero timeout makes close() send a TCP RST.
RESET_ON_CLOSE = struct.pack("ii", 1, 0)
JSON_CONTENT_TYPE = "application/json; charset=utf-8"


def run_logged(control: Callable[[float], None], seconds: float) -> None:
    """Run a connection control in its own thread and log it if it fails."""
    try:
        control(seconds)
    except (OSError, RuntimeError):
        logger.exception("Emulator connection control %s failed", control.__name__)


class EmulatorRequestHandler(BaseHTTPRequestHandler):
    """Handler of one connection; HTTP/1.1, so a client may send several requests."""

    protocol_version = "HTTP/1.1"
    server_version = "onec-emulator/1"
    # Headers and body go out in separate writes. With Nagle's algorithm on, the
    # body would wait for the client's delayed ACK of the headers.
    disable_nagle_algorithm = True

    service: EmulatorService
    # Request log record of the current contract request; None for admin requests.
    record: dict[str, Any] | None = None
    # Work to run once the current response is written.
    after_response: Callable[[], None] | None = None

    def setup(self) -> None:
        super().setup()
        self.service = self.server.service  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        self.dispatch()

    def do_POST(self) -> None:
        self.dispatch()

    def do_DELETE(self) -> None:
        self.dispatch()

    def dispatch(self) -> None:
        self.record = None
        self.after_response = None
        path = urlsplit(self.path).path
        try:
            if path.startswith("/_"):
                self.handle_admin(path)
                return
            endpoint = self.service.state.endpoint_for(path)
            if endpoint is None:
                self.close_connection = True  # the body, if any, stays unread
                self.send_error_body(404, "NOT_FOUND", "No such endpoint.")
                return
            self.handle_contract(endpoint, path)
        except (BrokenPipeError, ConnectionResetError) as err:
            # The client left, for example after its read timeout.
            logger.info(
                "%s closed the connection before the response to %s %s: %s",
                self.address_string(),
                self.command,
                path,
                err,
            )
            self.close_connection = True

    # Contract endpoints.

    def handle_contract(self, endpoint: str, path: str) -> None:
        state = self.service.state
        # Recorded before any response goes out, so a client that has its response
        # (or its reset) always finds the request in the log.
        self.record = state.requests.add(
            method=self.command,
            path=path,
            endpoint=endpoint,
            idempotency_key=self.headers.get("Idempotency-Key"),
        )
        try:
            body = self.read_body()
            fault = state.faults.take(endpoint)
            if fault is not None:
                state.requests.update(self.record, fault=fault.kind)
                if fault.apply(self):
                    return
            if not self.is_authorized(endpoint):
                return
            route = CONTRACT_ROUTES[endpoint]
            if self.command != route.method:
                raise ContractError(
                    405,
                    "METHOD_NOT_ALLOWED",
                    f"Use {route.method} for this endpoint.",
                    {"Allow": route.method},
                )
            request = ContractRequest(
                method=self.command,
                body=body,
                content_type=self.headers.get("Content-Type", ""),
                idempotency_key=self.headers.get("Idempotency-Key"),
            )
            self.send_reply(route.handle(state, request))
        except ContractError as err:
            self.send_reply(err.reply())

    def is_authorized(self, endpoint: str) -> bool:
        """Check the credentials, or send 401 and return False when they are wrong."""
        state = self.service.state
        header = self.headers.get("Authorization")
        if endpoint == "token" or not state.token_auth:
            if state.credentials.check_basic(header):
                return True
            challenge = 'Basic realm="1C", charset="UTF-8"'
        else:
            if state.credentials.check_bearer(header):
                return True
            challenge = 'Bearer realm="1C", error="invalid_token"'
        self.send_error_body(
            401,
            "UNAUTHORIZED",
            "The user name, password or token is wrong or expired.",
            {"WWW-Authenticate": challenge},
        )
        return False

    def read_body(self) -> bytes:
        if "Transfer-Encoding" in self.headers:
            self.close_connection = True
            raise ContractError(
                411, "LENGTH_REQUIRED", "Send the body with a Content-Length header."
            )
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise ContractError(400, "INVALID_REQUEST", "Invalid Content-Length.")
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise ContractError(
                413, "BODY_TOO_LARGE", f"The body exceeds {MAX_BODY_BYTES} bytes."
            )
        return self.rfile.read(length)

    # Admin endpoints.

    def handle_admin(self, path: str) -> None:
        routes = self.admin_routes()
        methods = routes.get(path)
        if methods is None:
            self.close_connection = True  # the body, if any, stays unread
            self.send_error_body(404, "NOT_FOUND", "No such admin endpoint.")
            return
        action = methods.get(self.command)
        if action is None:
            self.close_connection = True
            allowed = ", ".join(sorted(methods))
            self.send_error_body(
                405, "METHOD_NOT_ALLOWED", f"Use {allowed}.", {"Allow": allowed}
            )
            return
        try:
            body = self.read_body()
            payload = parse_json_object(body) if body else {}
            self.send_reply(action(payload))
        except ContractError as err:
            self.send_reply(err.reply())
        except ValueError as err:
            logger.info("Rejected admin request %s %s: %s", self.command, path, err)
            self.send_error_body(400, "INVALID_REQUEST", str(err))

    def admin_routes(self) -> dict[str, dict[str, Callable[[dict[str, Any]], Reply]]]:
        service = self.service
        state = service.state
        return {
            "/_ledger": {
                "GET": lambda _: Reply(200, {"ledger": service.ledger()}),
                "DELETE": lambda _: self.cleared(service.clear_ledger),
            },
            "/_requests": {
                "GET": lambda _: Reply(200, {"requests": service.requests()}),
                "DELETE": lambda _: self.cleared(state.requests.clear),
            },
            "/_faults": {
                "GET": lambda _: Reply(200, {"faults": state.faults.pending()}),
                "POST": self.add_fault,
                "DELETE": lambda _: self.cleared(state.faults.clear),
            },
            "/_credentials": {"POST": self.expire_credentials},
            "/_refuse": {"POST": lambda payload: self.schedule(payload, "refuse")},
            "/_stall": {"POST": lambda payload: self.schedule(payload, "stall")},
            "/_reset": {"POST": lambda _: self.cleared(service.reset)},
        }

    def cleared(self, clear: Callable[[], None]) -> Reply:
        clear()
        return Reply(200, {"cleared": True})

    def add_fault(self, payload: dict[str, Any]) -> Reply:
        """Queue ``{"endpoint": ..., "fault": {"kind": ...}, "times": N}``."""
        fault_data = payload.get("fault")
        if not isinstance(fault_data, dict):
            raise ValueError('"fault" must be an object with a "kind"')
        fault = Fault.from_dict(fault_data)
        self.service.faults.add(
            str(payload.get("endpoint")), fault, payload.get("times", 1)
        )
        return Reply(201, {"faults": self.service.faults.pending()})

    def expire_credentials(self, payload: dict[str, Any]) -> Reply:
        """Revoke tokens and, with ``{"new_password": ...}``, change the password."""
        new_password = payload.get("new_password")
        if new_password is not None and not isinstance(new_password, str):
            raise ValueError('"new_password" must be a string')
        self.service.expire_credentials(new_password)
        return Reply(200, {"expired": True})

    def schedule(self, payload: dict[str, Any], action: str) -> Reply:
        """Refuse or stall connections for ``{"seconds": N}`` after this response.

        The admin endpoint is unreachable meanwhile, so the time limit is required.
        """
        seconds = payload.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise ValueError('"seconds" must be a number')
        if not 0 < seconds <= MAX_HOLD_S:
            raise ValueError(f'"seconds" must be between 0 and {MAX_HOLD_S:.0f}')
        control = (
            self.service.refuse_connections
            if action == "refuse"
            else self.service.stall_connections
        )
        thread = threading.Thread(
            target=run_logged,
            args=(control, float(seconds)),
            name=f"emulator-{action}",
            daemon=True,
        )
        # Started after the response is written, so this client still reads it.
        self.close_connection = True
        self.after_response = thread.start
        return Reply(202, {action: True, "seconds": seconds})

    # Responses, and the FaultTarget interface of service_faults.

    def send_reply(self, reply: Reply) -> None:
        self.send_json(reply.status, reply.body, reply.headers)
        if self.after_response is not None:
            after_response, self.after_response = self.after_response, None
            after_response()

    def send_error_body(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.send_json(status, {"code": code, "message": message}, headers)

    def send_json(
        self, status: int, body: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        encoded = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_raw(status, encoded, JSON_CONTENT_TYPE, headers)

    def send_raw(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if self.record is not None:
            self.service.state.requests.update(self.record, status=status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def pause(self, seconds: float) -> None:
        self.service.state.stopping.wait(seconds)

    def reset_connection(self) -> None:
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
        # The socket closes only when rfile, which holds a reference, is closed too.
        self.rfile.close()
        self.connection.close()

    def drop_connection(self) -> None:
        self.close_connection = True

    # Logging through the "onec_emulator.service" logger, not stderr.

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)

    def log_error(self, format: str, *args: Any) -> None:
        logger.warning("%s %s", self.address_string(), format % args)
