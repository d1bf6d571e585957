"""The 1C side of the 1C site-exchange HTTP protocol for catalogs (type=catalog).

1C is the HTTP client and sends every request to one exchange URL:

1. ``mode=checkauth`` with HTTP Basic auth. The site returns a session cookie.
2. ``mode=init``. The site announces ``zip=yes|no`` and ``file_limit=<bytes>``.
3. ``mode=file&filename=<name>`` POSTs with the file bytes, in chunks of at most
   ``file_limit`` bytes that the site appends to each other.
4. ``mode=import&filename=<name>`` for each XML file, repeated while the site
   responds ``progress``.
5. Optional ``mode=deactivate`` (polled like import), then ``mode=complete``.
"""

from __future__ import annotations

import base64
import io
import logging
import re
import tempfile
import time
from collections.abc import Sequence
from typing import IO
from urllib.parse import urlsplit, urlunsplit

import requests

from onec_emulator.answers import (
    FAILURE,
    PROGRESS,
    SUCCESS,
    decode_body,
    is_setting,
    parse_settings,
    preview,
    reason_text,
    split_lines,
    status_word,
)
from onec_emulator.package import (
    PackageError,
    PackageFile,
    PathInput,
    collect_package,
    import_names,
    write_zip,
)
from onec_emulator.transcript import (
    Exchange,
    ExchangeResult,
    format_exchange,
    format_verdict,
    print_transcript,
)

__all__ = [
    "Exchange",
    "ExchangeClient",
    "ExchangeError",
    "ExchangeResult",
    "format_verdict",
    "print_transcript",
]

logger = logging.getLogger("onec_emulator.client")

ZIP_FILENAME = "exchange.zip"
USER_AGENT = "onec_emulator (1C site-exchange client)"
# A zip of up to this size stays in memory; a larger one spills to a temp file.
ZIP_MEMORY_LIMIT_BYTES = 32 * 1024 * 1024
# Lines kept in the transcript from a response that does not follow the
# protocol, such as an HTML error page.
INVALID_ANSWER_MAX_LINES = 10
REDACTION_MARK = "***"


class ExchangeError(Exception):
    """Failed exchange step: no response, HTTP error, invalid or failure response."""

    def __init__(self, reason: str, answer: Sequence[str] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.answer = list(answer)


class ExchangeClient:
    """HTTP client that plays 1C:Enterprise in a catalog exchange with a site.

    Options:

    - ``use_cookies``: send the checkauth cookie on later requests. When False,
      no Cookie header is ever sent and ``sessid`` goes into every later query.
    - ``use_zip``: None or True zips the package when init returns ``zip=yes``.
      False always uploads files one by one, and so does ``zip=no`` from init.
    - ``chunk_size``: bytes per mode=file POST when smaller than init's
      ``file_limit``.
    - ``version``: sent as ``version=`` with mode=init; None sends none.
    - ``poll_interval`` and ``import_timeout``: seconds between the requests of a
      mode=import or mode=deactivate that returns ``progress``, and the maximum
      seconds to keep polling one of them.
    - ``request_timeout``: connect and read timeouts of each request, in seconds.
    - ``auth_every_request``: send Basic auth with every request. When False,
      only mode=checkauth carries it.
    - ``session``: a requests.Session to send with. Its cookies are never sent.
    """

    def __init__(
        self,
        url: str,
        user: str,
        password: str,
        *,
        use_cookies: bool = True,
        use_zip: bool | None = None,
        chunk_size: int | None = None,
        version: str | None = "3.1",
        poll_interval: float = 0.2,
        import_timeout: float = 600.0,
        request_timeout: tuple[float, float] = (5.0, 60.0),
        auth_every_request: bool = True,
        session: requests.Session | None = None,
    ) -> None:
        if chunk_size is not None and chunk_size <= 0:
            raise ValueError(
                f"chunk_size must be a positive number of bytes, not {chunk_size}"
            )
        if poll_interval < 0:
            raise ValueError(f"poll_interval must be 0 s or more, not {poll_interval}")
        if import_timeout < 0:
            raise ValueError(
                f"import_timeout must be 0 s or more, not {import_timeout}"
            )

        self.url = url
        self.user = user
        self._password = password
        self.use_cookies = use_cookies
        self.use_zip = use_zip
        self.chunk_size = chunk_size
        self.version = version
        self.poll_interval = poll_interval
        self.import_timeout = import_timeout
        self.request_timeout = request_timeout
        self.auth_every_request = auth_every_request
        self.session = session if session is not None else requests.Session()

        self.transcript: list[Exchange] = []
        # Values the site announced, set by checkauth() and init().
        self.cookie: tuple[str, str] | None = None
        self.sessid: str | None = None
        self.timestamp: str | None = None
        self.file_limit: int | None = None
        self.server_zip: bool | None = None
        self.server_version: str | None = None

    def __repr__(self) -> str:
        return f"ExchangeClient({self.display_url!r}, user={self.user!r})"

    @property
    def display_url(self) -> str:
        """Exchange URL without any user name or password in it, for messages."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit(parts._replace(netloc=netloc))

    # Protocol steps. Each one raises ExchangeError when the step fails.

    def checkauth(self) -> list[str]:
        """Log in with Basic auth and store the session cookie and sessid."""
        self.cookie = None
        self.sessid = None
        self.timestamp = None
        lines = self._request("GET", "checkauth")
        self._require_success("checkauth", None, lines)
        if len(lines) < 3 or not lines[1] or not lines[2]:
            raise ExchangeError(
                "mode=checkauth returned success without the cookie name and value "
                "on the second and third lines of its response",
                lines,
            )

        self.cookie = (lines[1], lines[2])
        settings = parse_settings(lines[3:])
        # Without a sessid= line, the cookie value is used as the sessid, so a
        # run without cookies still names its session in the query.
        self.sessid = settings.get("sessid") or lines[2]
        self.timestamp = settings.get("timestamp")
        return lines

    def init(self) -> list[str]:
        """Read the site's zip support, file size limit, sessid and version."""
        self.file_limit = None
        self.server_zip = None
        self.server_version = None
        lines = self._request("GET", "init", settings_answer=True)
        word = status_word(lines)
        if word is not None and word != SUCCESS:
            self._require_success("init", None, lines)
        settings = parse_settings(lines[1:] if word == SUCCESS else lines)

        zip_value = settings.get("zip", "").lower()
        if zip_value not in ("yes", "no"):
            raise ExchangeError(
                "mode=init response has no valid zip=yes or zip=no line", lines
            )
        file_limit = _parse_file_limit(settings.get("file_limit"))
        if file_limit is None:
            raise ExchangeError(
                "mode=init response has no valid file_limit=<bytes> line with a "
                "positive whole number",
                lines,
            )

        self.server_zip = zip_value == "yes"
        self.file_limit = file_limit
        self.server_version = settings.get("version")
        if settings.get("sessid"):
            self.sessid = settings["sessid"]
        return lines

    def upload(self, name: str, data: bytes) -> None:
        """Upload one file in chunks of at most the chunk size, all under ``name``."""
        self._upload_stream(name, io.BytesIO(data))

    def import_file(self, name: str) -> list[str]:
        """Ask the site to import an uploaded file, polling while it returns progress.

        Returns the success response. Raises ExchangeError on a failure response
        or when the site still returns progress after ``import_timeout`` seconds.
        """
        return self._poll("import", name)

    def deactivate(self) -> list[str]:
        """Ask the site to deactivate what the exchange did not mention, polling it."""
        return self._poll("deactivate", None)

    def complete(self) -> list[str]:
        """Tell the site that the exchange is over."""
        lines = self._request("GET", "complete")
        self._require_success("complete", None, lines)
        return lines

    def push(
        self,
        package: PathInput | Sequence[PathInput],
        *,
        complete: bool = False,
        deactivate: bool = False,
    ) -> ExchangeResult:
        """Run a whole exchange for a package: checkauth, init, upload, import.

        ``package`` is a folder, or a sequence of files and folders; see
        collect_package for how files are named. Deactivate runs before complete
        when both are requested. Every failure of the exchange is returned as a
        result with ``ok=False`` and the transcript up to the failure.
        """
        self.transcript = []
        logger.info("exchange with %s started", self.display_url)
        try:
            files = collect_package(package)
            self.checkauth()
            self.init()
            self._upload_package(files)
            for name in import_names(files):
                self.import_file(name)
            if deactivate:
                self.deactivate()
            if complete:
                self.complete()
        except (ExchangeError, PackageError, OSError) as error:
            reason = self._redact(str(error))
            logger.warning("exchange with %s failed: %s", self.display_url, reason)
            return ExchangeResult(
                ok=False, reason=reason, transcript=self.transcript, sessid=self.sessid
            )

        logger.info(
            "exchange with %s succeeded after %d requests",
            self.display_url,
            len(self.transcript),
        )
        return ExchangeResult(
            ok=True, reason="", transcript=self.transcript, sessid=self.sessid
        )

    # Uploads.

    def _upload_package(self, files: Sequence[PackageFile]) -> None:
        if self.server_zip and self.use_zip is not False:
            self._upload_zip(files)
            return
        if self.use_zip and not self.server_zip:
            logger.info("site returned zip=no, so files are uploaded one by one")
        for item in files:
            with item.path.open("rb") as stream:
                self._upload_stream(item.name, stream)

    def _upload_zip(self, files: Sequence[PackageFile]) -> None:
        with tempfile.SpooledTemporaryFile(max_size=ZIP_MEMORY_LIMIT_BYTES) as archive:
            write_zip(files, archive)
            archive.seek(0)
            self._upload_stream(ZIP_FILENAME, archive)

    def _upload_stream(self, name: str, stream: IO[bytes]) -> None:
        # An empty file still gets one POST, so the site learns that it exists.
        chunk_limit = self._chunk_limit()
        is_first_chunk = True
        while True:
            data = stream.read(chunk_limit)
            if not data and not is_first_chunk:
                return
            lines = self._request("POST", "file", filename=name, body=data)
            self._require_success("file", name, lines)
            is_first_chunk = False
            if len(data) < chunk_limit:
                return

    def _chunk_limit(self) -> int:
        if self.file_limit is None:
            if self.chunk_size is None:
                raise RuntimeError(
                    "call init() before upload(), because the chunk size comes "
                    "from the file_limit that init returns unless chunk_size is set"
                )
            return self.chunk_size
        if self.chunk_size is None:
            return self.file_limit
        return min(self.file_limit, self.chunk_size)

    # Requests and responses.

    def _poll(self, mode: str, filename: str | None) -> list[str]:
        deadline = time.monotonic() + self.import_timeout
        while True:
            lines = self._request("GET", mode, filename=filename)
            if status_word(lines) != PROGRESS:
                self._require_success(mode, filename, lines)
                return lines

            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ExchangeError(
                    f"{_describe(mode, filename)} still returned progress after "
                    f"{self.import_timeout:g} s. Raise the import timeout if the "
                    "site needs longer",
                    lines,
                )
            time.sleep(min(self.poll_interval, remaining))

    def _require_success(
        self, mode: str, filename: str | None, lines: Sequence[str]
    ) -> None:
        word = status_word(lines)
        if word == SUCCESS:
            return
        described = _describe(mode, filename)
        if word == FAILURE:
            raise ExchangeError(
                f"{described} returned failure: {reason_text(lines)}", lines
            )
        if word == PROGRESS:
            raise ExchangeError(
                f"{described} returned progress, which is valid only for "
                "mode=import and mode=deactivate",
                lines,
            )
        raise ExchangeError(
            f"{described} returned {lines[0]!r} where success was expected", lines
        )

    def _request(
        self,
        method: str,
        mode: str,
        *,
        filename: str | None = None,
        body: bytes | None = None,
        settings_answer: bool = False,
    ) -> list[str]:
        """Send one request, record it and return the response lines.

        Raises ExchangeError when no response arrives, the HTTP status is not 2xx,
        or the first line is not a status word (nor a ``key=value`` setting when
        ``settings_answer`` is set).
        """
        described = _describe(mode, filename)
        prepared = self._prepare(method, mode, filename, body)
        bytes_sent = len(body) if body is not None else 0
        started = time.perf_counter()
        try:
            # Redirects are not followed, because a redirected request would
            # carry the session's cookies.
            response = self.session.send(
                prepared, allow_redirects=False, timeout=self.request_timeout
            )
        except requests.RequestException as error:
            self._record(method, mode, filename, 0, bytes_sent, [], started)
            raise ExchangeError(
                f"{described} request to {self.display_url} failed: "
                f"{self._network_error_detail(error)}"
            ) from error

        text = decode_body(response.content, response.headers.get("Content-Type"))
        lines = [self._redact(line) for line in split_lines(text)]
        first_line = lines[0] if lines else ""
        valid = status_word(lines) is not None or (
            settings_answer and is_setting(first_line)
        )
        if response.status_code >= 300 or not valid:
            lines = lines[:INVALID_ANSWER_MAX_LINES]
        self._record(
            method, mode, filename, response.status_code, bytes_sent, lines, started
        )

        if response.status_code >= 300:
            raise ExchangeError(
                self._redact(_http_error_reason(described, response, text)), lines
            )
        if not valid:
            raise ExchangeError(
                f"response to {described} does not start with success, progress "
                f"or failure: {self._redact(preview(text))}",
                lines,
            )
        return lines

    def _network_error_detail(self, error: requests.RequestException) -> str:
        connect_timeout, read_timeout = self.request_timeout
        if isinstance(error, requests.ConnectTimeout):
            return f"connect timed out after {connect_timeout:g} s"
        if isinstance(error, requests.ReadTimeout):
            return f"no response within the read timeout of {read_timeout:g} s"
        # requests wraps urllib3 errors, which wrap the socket error whose
        # message ("Connection refused") is the useful part.
        seen: set[int] = set()
        current: BaseException | None = error
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            if isinstance(current, OSError) and current.strerror:
                return f"{type(error).__name__}: {current.strerror}"
            current = _wrapped_error(current)
        return f"{type(error).__name__}: {error}"

    def _prepare(
        self, method: str, mode: str, filename: str | None, body: bytes | None
    ) -> requests.PreparedRequest:
        params = {"type": "catalog", "mode": mode}
        if filename is not None:
            params["filename"] = filename
        if mode == "init" and self.version:
            params["version"] = self.version
        if not self.use_cookies and mode != "checkauth" and self.sessid:
            params["sessid"] = self.sessid

        headers = {"User-Agent": USER_AGENT}
        if body is not None:
            headers["Content-Type"] = "application/octet-stream"
        request = requests.Request(
            method, self.url, params=params, data=body, headers=headers
        )
        prepared = self.session.prepare_request(request)

        # The session adds its own cookie jar, its auth, netrc entries and URL
        # credentials while preparing. This client decides both headers alone.
        prepared.headers.pop("Cookie", None)
        prepared.headers.pop("Authorization", None)
        if self.auth_every_request or mode == "checkauth":
            prepared.headers["Authorization"] = _basic_auth(self.user, self._password)
        if self.use_cookies and self.cookie is not None and mode != "checkauth":
            name, value = self.cookie
            prepared.headers["Cookie"] = f"{name}={value}"
        return prepared

    def _record(
        self,
        method: str,
        mode: str,
        filename: str | None,
        status: int,
        bytes_sent: int,
        answer: list[str],
        started: float,
    ) -> None:
        elapsed_ms = (time.perf_counter() - started) * 1000
        exchange = Exchange(
            method=method,
            mode=mode,
            filename=filename,
            status=status,
            bytes_sent=bytes_sent,
            answer=answer,
            elapsed_ms=elapsed_ms,
        )
        self.transcript.append(exchange)
        logger.debug("%s", format_exchange(exchange))

    def _redact(self, text: str) -> str:
        """Replace the password and the Basic auth token in a text by a mark.

        The password is replaced only where no letter or digit touches it, so a
        short password does not mangle the words that contain it.
        """
        if not self._password:
            return text
        token = _basic_auth(self.user, self._password).removeprefix("Basic ")
        text = text.replace(token, REDACTION_MARK)
        pattern = rf"(?<![^\W_]){re.escape(self._password)}(?![^\W_])"
        return re.sub(pattern, REDACTION_MARK, text)


def _describe(mode: str, filename: str | None) -> str:
    if filename is None:
        return f"mode={mode}"
    return f"mode={mode} filename={filename}"


def _wrapped_error(error: BaseException) -> BaseException | None:
    reason = getattr(error, "reason", None)
    if isinstance(reason, BaseException):
        return reason
    if error.args and isinstance(error.args[0], BaseException):
        return error.args[0]
    return error.__cause__ or error.__context__


def _parse_file_limit(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        limit = int(value)
    except ValueError:
        return None
    return limit if limit > 0 else None


def _basic_auth(user: str, password: str) -> str:
    # UTF-8, as RFC 7617 allows with charset="UTF-8", so that Cyrillic user
    # names work. requests encodes Basic credentials as latin-1 and would fail.
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def _http_error_reason(described: str, response: requests.Response, text: str) -> str:
    reason = f"response to {described} was HTTP {response.status_code}, {preview(text)}"
    if 300 <= response.status_code < 400:
        location = response.headers.get("Location", "no Location header")
        reason += f". The redirect to {location} was not followed, so use that URL"
    elif response.status_code in (401, 403):
        reason += ". Check the user name, the password and the user's rights"
    return reason
