"""The 1C exchange emulator against a stand-in site that follows the protocol.

The stand-in is an HTTP server on 127.0.0.1 with an in-memory store. It appends
the chunks of each filename per session, unzips uploaded zips when an import
names a file inside them, and responds progress twice before success for each
import. It records every request so tests can check what 1C would have sent.
No test here needs the database.
"""

from __future__ import annotations

import base64
import io
import math
import os
import random
import socket
import subprocess
import sys
import threading
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from onec_emulator import (
    ExchangeClient,
    ExchangeError,
    ExchangeResult,
    collect_package,
    print_transcript,
)

PROJECT_DIR = Path(__file__).resolve().parent.parent
EXCHANGE_PATH = "/exchange/1c/"
USER = "exchange"
PASSWORD = "Pa55-w0rd-Zx9"
COOKIE_NAME = "EXCHANGE_SESSION"
FAST_POLL_S = 0.01
CLI_TIMEOUT_S = 60


# The stand-in site.


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lowercase names
    body_length: int

    @property
    def mode(self) -> str | None:
        return self.query.get("mode")


@dataclass
class Answer:
    status: int
    text: str
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class StandInSession:
    cookie_value: str
    sessid: str
    uploads: dict[str, bytearray] = field(default_factory=dict)
    polls: Counter[str] = field(default_factory=Counter)


@dataclass
class StandInSite:
    """Settings, store and request log of the stand-in exchange endpoint."""

    url: str = ""
    user: str = USER
    password: str = PASSWORD
    zip_enabled: bool = False
    file_limit: int = 1000
    import_progress_answers: int = 2
    deactivate_progress_answers: int = 1
    # filename -> reason in the failure response to its import
    failing_imports: dict[str, str] = field(default_factory=dict)
    # mode -> (HTTP status, HTML body) sent instead of the protocol response
    broken_modes: dict[str, tuple[int, str]] = field(default_factory=dict)
    # mode -> raw text sent with HTTP 200 instead of the protocol response
    raw_answers: dict[str, str] = field(default_factory=dict)
    answer_encoding: str = "utf-8"
    declare_charset: bool = True
    requests: list[RecordedRequest] = field(default_factory=list)
    sessions: list[StandInSession] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> Answer:
        parts = urlsplit(target)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        with self.lock:
            self.requests.append(
                RecordedRequest(method, parts.path, query, headers, len(body))
            )
            if parts.path != EXCHANGE_PATH:
                return Answer(404, "not found")
            answer = self._answer(method, query, headers, body)
        if not self.declare_charset and answer.content_type.startswith("text/plain"):
            answer.content_type = "text/plain"
        return answer

    def _answer(
        self, method: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> Answer:
        mode = query.get("mode", "")
        if mode in self.broken_modes:
            status, html = self.broken_modes[mode]
            return Answer(status, html, content_type="text/html; charset=utf-8")
        if mode in self.raw_answers:
            return Answer(200, self.raw_answers[mode])
        if query.get("type") != "catalog":
            return _failure(f"unsupported type {query.get('type')!r}")
        if mode == "checkauth":
            return self._checkauth(headers)

        session = self._session_of(query, headers)
        if session is None:
            return _failure("session not found; send mode=checkauth first")
        if mode == "init":
            return self._init(session)
        if mode == "file" and method == "POST":
            session.uploads.setdefault(query["filename"], bytearray()).extend(body)
            return Answer(200, "success\n")
        if mode == "import":
            return self._import(session, query.get("filename", ""))
        if mode == "deactivate":
            return self._poll(session, "deactivate", self.deactivate_progress_answers)
        if mode == "complete":
            return Answer(200, "success\n")
        return _failure(f"unsupported mode {mode!r}")

    def _checkauth(self, headers: dict[str, str]) -> Answer:
        if _basic_credentials(headers) != (self.user, self.password):
            return _failure("invalid user name or password")
        number = len(self.sessions) + 1
        session = StandInSession(
            cookie_value=f"cookie-{number}", sessid=f"sessid-{number}"
        )
        self.sessions.append(session)
        text = f"success\n{COOKIE_NAME}\n{session.cookie_value}\nsessid={session.sessid}\ntimestamp=1700000000\n"
        # Like PHP sites, also send the cookie in Set-Cookie (init sets another
        # one), so a client that replays its cookie jar gets caught.
        cookies = f"{COOKIE_NAME}={session.cookie_value}; Path=/"
        return Answer(200, text, headers={"Set-Cookie": cookies})

    def _session_of(
        self, query: dict[str, str], headers: dict[str, str]
    ) -> StandInSession | None:
        jar: SimpleCookie = SimpleCookie(headers.get("cookie", ""))
        for session in self.sessions:
            if COOKIE_NAME in jar and jar[COOKIE_NAME].value == session.cookie_value:
                return session
            if query.get("sessid") == session.sessid:
                return session
        return None

    def _init(self, session: StandInSession) -> Answer:
        zip_value = "yes" if self.zip_enabled else "no"
        text = f"zip={zip_value}\nfile_limit={self.file_limit}\nsessid={session.sessid}\nversion=3.1\n"
        return Answer(200, text, headers={"Set-Cookie": "tracker=1; Path=/"})

    def _import(self, session: StandInSession, filename: str) -> Answer:
        if filename not in self.unpacked(session):
            return _failure(f"file not found: {filename}")
        if filename in self.failing_imports:
            return _failure(self.failing_imports[filename])
        return self._poll(session, f"import:{filename}", self.import_progress_answers)

    def _poll(self, session: StandInSession, key: str, progress_answers: int) -> Answer:
        session.polls[key] += 1
        if session.polls[key] <= progress_answers:
            return Answer(
                200, f"progress\nstep {session.polls[key]} of {progress_answers + 1}\n"
            )
        return Answer(200, "success\n")

    def unpacked(self, session: StandInSession) -> dict[str, bytes]:
        """Return the files of a session after unpacking every uploaded zip."""
        files: dict[str, bytes] = {}
        for name, data in session.uploads.items():
            if not name.endswith(".zip"):
                files[name] = bytes(data)
                continue
            with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
                for member in archive.namelist():
                    files[member] = archive.read(member)
        return files

    def only_session(self) -> StandInSession:
        assert len(self.sessions) == 1, (
            f"expected one session, got {len(self.sessions)}"
        )
        return self.sessions[0]

    def posts(self) -> list[RecordedRequest]:
        return [request for request in self.requests if request.method == "POST"]

    def modes(self) -> list[str | None]:
        return [request.mode for request in self.requests]


def _failure(reason: str) -> Answer:
    return Answer(200, f"failure\n{reason}\n")


def _basic_credentials(headers: dict[str, str]) -> tuple[str, str] | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme != "Basic":
        return None
    user, _, password = base64.b64decode(token).decode("utf-8").partition(":")
    return user, password


class StandInServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, site: StandInSite) -> None:
        super().__init__(("127.0.0.1", 0), StandInHandler)
        self.site = site


class StandInHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._respond(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self._respond(self.rfile.read(length))

    def _respond(self, body: bytes) -> None:
        assert isinstance(self.server, StandInServer)
        site = self.server.site
        headers = {name.lower(): value for name, value in self.headers.items()}
        answer = site.handle(self.command, self.path, headers, body)
        data = answer.text.encode(site.answer_encoding)
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output free of one line per request."""


@pytest.fixture
def site() -> Iterator[StandInSite]:
    site = StandInSite()
    server = StandInServer(site)
    # A short poll interval makes shutdown() return quickly after each test.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    site.url = f"http://127.0.0.1:{server.server_address[1]}{EXCHANGE_PATH}"
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# Helpers.


def make_client(site: StandInSite, **options: Any) -> ExchangeClient:
    options.setdefault("poll_interval", FAST_POLL_S)
    return ExchangeClient(site.url, site.user, site.password, **options)


def write_package(folder: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


def random_bytes(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def small_package(folder: Path) -> Path:
    return write_package(
        folder,
        {
            "import.xml": b"<import/>",
            "offers.xml": b"<offers/>",
            "import_files/ab/x.jpg": random_bytes(300),
        },
    )


def transcript_text(result: ExchangeResult) -> str:
    stream = io.StringIO()
    print_transcript(result, stream)
    return stream.getvalue()


def closed_port() -> int:
    """Return a port on 127.0.0.1 that this test bound and released."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_cli(
    *args: str, password: str | None = PASSWORD
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("ONEC_PASSWORD", None)
    if password is not None:
        env["ONEC_PASSWORD"] = password
    return subprocess.run(
        [sys.executable, "-m", "onec_emulator", *args],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


# Chunked uploads.

SIZES_AROUND_LIMIT = [0, 1, 299, 300, 301, 999, 1000, 1001, 3500]


@pytest.mark.parametrize(
    ("file_limit", "chunk_size", "expected_chunk"),
    [
        (1000, None, 1000),  # the site's file_limit
        (1000, 300, 300),  # the client's smaller chunk_size
        (300, 1000, 300),  # a larger chunk_size never exceeds file_limit
    ],
)
def test_upload_chunks_reassemble(
    site: StandInSite,
    tmp_path: Path,
    file_limit: int,
    chunk_size: int | None,
    expected_chunk: int,
) -> None:
    site.file_limit = file_limit
    files = {
        f"goods/{size}.bin": random_bytes(size, seed=size)
        for size in SIZES_AROUND_LIMIT
    }
    package = write_package(tmp_path, files)

    result = make_client(site, chunk_size=chunk_size).push(package)

    assert result.ok, result.reason
    stored = site.only_session().uploads
    posts = Counter(request.query["filename"] for request in site.posts())
    for name, data in files.items():
        assert bytes(stored[name]) == data, name
        assert posts[name] == max(1, math.ceil(len(data) / expected_chunk)), name
    assert max(request.body_length for request in site.posts()) == expected_chunk


def test_upload_posts_octet_stream(site: StandInSite, tmp_path: Path) -> None:
    package = write_package(tmp_path, {"import.xml": b"<import/>"})

    result = make_client(site).push(package)

    assert result.ok, result.reason
    post = site.posts()[0]
    assert post.headers["content-type"] == "application/octet-stream"
    assert post.query["type"] == "catalog"
    assert post.query["filename"] == "import.xml"


def test_upload_keeps_relative_names(site: StandInSite, tmp_path: Path) -> None:
    package = write_package(
        tmp_path,
        {"import.xml": b"a", "goods/1/offers.xml": b"b", "import_files/ab/x.jpg": b"c"},
    )

    result = make_client(site).push(package)

    assert result.ok, result.reason
    assert site.unpacked(site.only_session()) == {
        "goods/1/offers.xml": b"b",
        "import.xml": b"a",
        "import_files/ab/x.jpg": b"c",
    }


def test_upload_api_without_push(site: StandInSite) -> None:
    client = make_client(site, chunk_size=4)
    client.checkauth()
    client.init()

    client.upload("import.xml", b"0123456789")

    assert bytes(site.only_session().uploads["import.xml"]) == b"0123456789"
    assert len(site.posts()) == 3


# Package inputs.


def test_package_list_of_files_and_folders(tmp_path: Path) -> None:
    single = write_package(tmp_path / "loose", {"offers.xml": b"o"}) / "offers.xml"
    folder = write_package(
        tmp_path / "pkg", {"import.xml": b"i", "goods/prices.xml": b"p"}
    )

    files = collect_package([single, folder])

    assert [item.name for item in files] == [
        "goods/prices.xml",
        "import.xml",
        "offers.xml",
    ]


def test_package_duplicate_names_fail(site: StandInSite, tmp_path: Path) -> None:
    first = write_package(tmp_path / "a", {"import.xml": b"1"})
    second = write_package(tmp_path / "b", {"import.xml": b"2"})

    result = make_client(site).push([first, second])

    assert not result.ok
    assert "import.xml" in result.reason
    assert site.requests == []


def test_package_missing_path_fails(site: StandInSite, tmp_path: Path) -> None:
    result = make_client(site).push(tmp_path / "absent")

    assert not result.ok
    assert "package path not found" in result.reason
    assert result.transcript == []
    assert site.requests == []


# Cookies, sessid and auth.


def test_cookies_on_sends_cookie_only(site: StandInSite, tmp_path: Path) -> None:
    result = make_client(site, use_cookies=True).push(
        small_package(tmp_path), complete=True
    )

    assert result.ok, result.reason
    checkauth, *later = site.requests
    assert "cookie" not in checkauth.headers
    assert len(later) > 3
    for request in later:
        assert request.headers.get("cookie") == f"{COOKIE_NAME}=cookie-1", request.mode
        assert "sessid" not in request.query, request.mode


def test_cookies_off_sends_sessid_only(site: StandInSite, tmp_path: Path) -> None:
    result = make_client(site, use_cookies=False).push(
        small_package(tmp_path), complete=True
    )

    assert result.ok, result.reason
    assert result.sessid == "sessid-1"
    checkauth, *later = site.requests
    assert "sessid" not in checkauth.query
    assert len(later) > 3
    for request in site.requests:
        assert "cookie" not in request.headers, request.mode
    for request in later:
        assert request.query.get("sessid") == "sessid-1", request.mode


def test_cookies_of_caller_session_ignored(site: StandInSite, tmp_path: Path) -> None:
    session = requests.Session()
    session.cookies.set("leaked", "1")

    result = make_client(site, session=session).push(small_package(tmp_path))

    assert result.ok, result.reason
    checkauth, *later = site.requests
    assert "cookie" not in checkauth.headers
    for request in later:
        assert request.headers.get("cookie") == f"{COOKIE_NAME}=cookie-1", request.mode


def test_auth_every_request_by_default(site: StandInSite, tmp_path: Path) -> None:
    result = make_client(site).push(small_package(tmp_path))

    assert result.ok, result.reason
    for request in site.requests:
        assert request.headers["authorization"].startswith("Basic "), request.mode


def test_auth_only_on_checkauth(site: StandInSite, tmp_path: Path) -> None:
    result = make_client(site, auth_every_request=False).push(small_package(tmp_path))

    assert result.ok, result.reason
    checkauth, *later = site.requests
    assert "authorization" in checkauth.headers
    for request in later:
        assert "authorization" not in request.headers, request.mode


def test_auth_utf8_user_name(site: StandInSite, tmp_path: Path) -> None:
    site.user = "Обмен"

    result = make_client(site).push(small_package(tmp_path))

    assert result.ok, result.reason


def test_checkauth_wrong_password_fails(site: StandInSite, tmp_path: Path) -> None:
    client = ExchangeClient(
        site.url, site.user, "wrong-secret-42", poll_interval=FAST_POLL_S
    )

    result = client.push(small_package(tmp_path))

    assert not result.ok
    assert "invalid user name or password" in result.reason
    assert site.modes() == ["checkauth"]


def test_init_sends_version(site: StandInSite, tmp_path: Path) -> None:
    make_client(site).push(small_package(tmp_path))
    make_client(site, version=None).push(small_package(tmp_path))

    inits = [request for request in site.requests if request.mode == "init"]
    assert inits[0].query.get("version") == "3.1"
    assert "version" not in inits[1].query


def test_init_values_stored(site: StandInSite) -> None:
    site.zip_enabled = True
    site.file_limit = 12345
    client = make_client(site)

    assert client.checkauth()[:3] == ["success", COOKIE_NAME, "cookie-1"]
    client.init()

    assert client.server_zip is True
    assert client.file_limit == 12345
    assert client.sessid == "sessid-1"
    assert client.server_version == "3.1"
    assert client.timestamp == "1700000000"


def test_init_without_file_limit_fails(site: StandInSite, tmp_path: Path) -> None:
    site.raw_answers["init"] = "zip=no\n"

    result = make_client(site).push(small_package(tmp_path))

    assert not result.ok
    assert "file_limit" in result.reason
    assert site.posts() == []


# Zip mode.


def test_zip_uploads_one_archive(site: StandInSite, tmp_path: Path) -> None:
    site.zip_enabled = True
    site.file_limit = 500
    files = {
        "import.xml": b"<import/>",
        "goods/1/offers.xml": b"<offers/>",
        "import_files/ab/x.jpg": random_bytes(2000),
    }
    package = write_package(tmp_path, files)

    result = make_client(site).push(package)

    assert result.ok, result.reason
    uploaded_names = {request.query["filename"] for request in site.posts()}
    assert len(uploaded_names) == 1
    assert uploaded_names.pop().endswith(".zip")
    assert len(site.posts()) > 1  # the zip is chunked like any file
    assert site.unpacked(site.only_session()) == files
    assert result.answers("import")[-1] == ["success"]


def test_zip_uses_deflate(site: StandInSite, tmp_path: Path) -> None:
    site.zip_enabled = True
    site.file_limit = 10**6
    package = write_package(tmp_path, {"import.xml": b"<a/>" * 1000})

    result = make_client(site).push(package)

    assert result.ok, result.reason
    (data,) = site.only_session().uploads.values()
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        (info,) = archive.infolist()
    assert info.compress_type == zipfile.ZIP_DEFLATED
    assert info.filename == "import.xml"


@pytest.mark.parametrize(
    ("server_zip", "use_zip", "expect_zip"),
    [
        (True, None, True),
        (True, True, True),
        (True, False, False),
        (False, None, False),
        (False, True, False),  # zip=no from the site always wins
    ],
)
def test_zip_option_and_site_answer(
    site: StandInSite,
    tmp_path: Path,
    server_zip: bool,
    use_zip: bool | None,
    expect_zip: bool,
) -> None:
    site.zip_enabled = server_zip

    result = make_client(site, use_zip=use_zip).push(small_package(tmp_path))

    assert result.ok, result.reason
    names = {request.query["filename"] for request in site.posts()}
    if expect_zip:
        assert names == {"exchange.zip"}
    else:
        assert names == {"import.xml", "offers.xml", "import_files/ab/x.jpg"}


# Imports.


def test_import_polls_until_success(site: StandInSite, tmp_path: Path) -> None:
    result = make_client(site).push(small_package(tmp_path))

    assert result.ok, result.reason
    imports = [
        request.query["filename"]
        for request in site.requests
        if request.mode == "import"
    ]
    assert imports == ["import.xml"] * 3 + ["offers.xml"] * 3
    assert [answer[0] for answer in result.answers("import")] == [
        "progress",
        "progress",
        "success",
    ] * 2


def test_import_order_skips_non_xml(site: StandInSite, tmp_path: Path) -> None:
    package = write_package(
        tmp_path,
        {
            "offers.xml": b"o",
            "import.xml": b"i",
            "goods/1/prices.xml": b"p",
            "import_files/ab/meta.xml": b"m",
            "import_files/ab/x.jpg": b"x",
            "notes.txt": b"n",
        },
    )
    site.import_progress_answers = 0

    result = make_client(site).push(package)

    assert result.ok, result.reason
    imports = [
        request.query["filename"]
        for request in site.requests
        if request.mode == "import"
    ]
    assert imports == ["goods/1/prices.xml", "import.xml", "offers.xml"]


def test_import_failure_stops_exchange(site: StandInSite, tmp_path: Path) -> None:
    site.failing_imports["import.xml"] = "invalid XML at line 3"

    result = make_client(site).push(
        small_package(tmp_path), complete=True, deactivate=True
    )

    assert not result.ok
    assert "mode=import filename=import.xml returned failure" in result.reason
    assert "invalid XML at line 3" in result.reason
    assert result.answers("import") == [["failure", "invalid XML at line 3"]]
    assert site.modes()[-1] == "import"
    assert "complete" not in site.modes()


def test_import_unknown_file_raises(site: StandInSite) -> None:
    client = make_client(site)
    client.checkauth()
    client.init()

    with pytest.raises(ExchangeError) as caught:
        client.import_file("missing.xml")

    assert "file not found: missing.xml" in caught.value.reason
    assert caught.value.answer == ["failure", "file not found: missing.xml"]


def test_import_timeout_fails(site: StandInSite, tmp_path: Path) -> None:
    site.import_progress_answers = 10**9

    result = make_client(site, import_timeout=0.1).push(small_package(tmp_path))

    assert not result.ok
    assert "still returned progress after 0.1 s" in result.reason
    assert "mode=import filename=import.xml" in result.reason


def test_import_reason_in_windows_1251(site: StandInSite, tmp_path: Path) -> None:
    site.answer_encoding = "windows-1251"
    site.declare_charset = False
    site.failing_imports["import.xml"] = "Ошибка в строке 3"

    result = make_client(site).push(small_package(tmp_path))

    assert not result.ok
    assert "Ошибка в строке 3" in result.reason


# Deactivate and complete.


def test_deactivate_then_complete(site: StandInSite, tmp_path: Path) -> None:
    site.import_progress_answers = 0

    result = make_client(site).push(
        small_package(tmp_path), complete=True, deactivate=True
    )

    assert result.ok, result.reason
    assert site.modes()[-3:] == ["deactivate", "deactivate", "complete"]
    assert [answer[0] for answer in result.answers("deactivate")] == [
        "progress",
        "success",
    ]
    assert result.answers("complete") == [["success"]]


def test_complete_and_deactivate_optional(site: StandInSite, tmp_path: Path) -> None:
    result = make_client(site).push(small_package(tmp_path))

    assert result.ok, result.reason
    assert "complete" not in site.modes()
    assert "deactivate" not in site.modes()


# Invalid answers.


def test_http_500_is_clear_failure(site: StandInSite, tmp_path: Path) -> None:
    site.broken_modes["file"] = (500, "<html><body>Internal Server Error</body></html>")

    result = make_client(site).push(small_package(tmp_path))

    assert not result.ok
    assert "response to mode=file filename=import.xml was HTTP 500" in result.reason
    assert "body starts with '<html>" in result.reason
    assert result.transcript[-1].status == 500
    assert "import" not in site.modes()


def test_redirect_not_followed(site: StandInSite, tmp_path: Path) -> None:
    site.broken_modes["checkauth"] = (302, "")

    result = make_client(site).push(small_package(tmp_path))

    assert not result.ok
    assert "response to mode=checkauth was HTTP 302" in result.reason
    assert "was not followed" in result.reason
    assert site.modes() == ["checkauth"]


def test_unknown_first_line_fails(site: StandInSite, tmp_path: Path) -> None:
    site.raw_answers["complete"] = "OK\n"

    result = make_client(site).push(small_package(tmp_path), complete=True)

    assert not result.ok
    assert (
        "response to mode=complete does not start with success, progress or failure"
        in result.reason
    )
    assert "body starts with 'OK" in result.reason


def test_progress_on_file_fails(site: StandInSite, tmp_path: Path) -> None:
    site.raw_answers["file"] = "progress\n"

    result = make_client(site).push(small_package(tmp_path))

    assert not result.ok
    assert "mode=file filename=import.xml returned progress" in result.reason
    assert len(site.posts()) == 1


def test_connection_refused_fails(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}{EXCHANGE_PATH}"
    client = ExchangeClient(url, USER, PASSWORD)

    result = client.push(small_package(tmp_path))

    assert not result.ok
    assert "mode=checkauth request to" in result.reason
    assert len(result.transcript) == 1
    assert result.transcript[0].status == 0


# Transcript.


def test_transcript_lines(site: StandInSite, tmp_path: Path) -> None:
    package = write_package(tmp_path, {"import.xml": b"12345"})

    result = make_client(site).push(package, complete=True)
    lines = transcript_text(result).splitlines()

    assert lines[0].startswith("GET mode=checkauth -> 200 success (")
    assert lines[1].startswith(
        "GET mode=init -> 200 zip=no file_limit=1000 sessid=sessid-1 version=3.1 ("
    )
    assert lines[2].startswith(
        "POST mode=file filename=import.xml 5 B -> 200 success ("
    )
    assert lines[3].startswith(
        "GET mode=import filename=import.xml -> 200 progress: step 1 of 3 ("
    )
    assert (
        lines[-1]
        == "exchange succeeded: 1 files uploaded in 1 POSTs (5 B), 1 files imported"
    )
    assert len(lines) == len(result.transcript) + 1
    assert "cookie-1" not in "\n".join(lines)


def test_transcript_records_requests(site: StandInSite, tmp_path: Path) -> None:
    package = write_package(tmp_path, {"import.xml": b"12345"})

    result = make_client(site).push(package)

    post = result.transcript[2]
    assert (post.method, post.mode, post.filename) == ("POST", "file", "import.xml")
    assert post.status == 200
    assert post.bytes_sent == 5
    assert post.answer == ["success"]
    assert post.elapsed_ms >= 0
    assert len(result.transcript) == len(site.requests)


def test_password_never_in_transcript(site: StandInSite, tmp_path: Path) -> None:
    # The error page echoes the password, as some debug pages do.
    site.broken_modes["file"] = (500, f"<html>debug: PHP_AUTH_PW={PASSWORD}</html>")

    result = make_client(site).push(small_package(tmp_path))
    printed = transcript_text(result)

    assert not result.ok
    assert PASSWORD not in printed
    assert PASSWORD not in result.reason
    assert all(
        PASSWORD not in line for item in result.transcript for line in item.answer
    )
    assert "PHP_AUTH_PW=***" in printed


def test_wrong_password_not_printed(site: StandInSite, tmp_path: Path) -> None:
    wrong_password = "wrong-secret-42"
    client = ExchangeClient(site.url, site.user, wrong_password)

    printed = transcript_text(client.push(small_package(tmp_path)))

    assert wrong_password not in printed
    assert (
        "exchange failed: mode=checkauth returned failure: invalid user name or password"
        in printed
    )


# Command line.


def test_cli_success_exit_0(site: StandInSite, tmp_path: Path) -> None:
    package = small_package(tmp_path)

    completed = run_cli(
        "push",
        site.url,
        str(package),
        "--user",
        USER,
        "--poll-interval",
        "0.01",
        "--complete",
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "GET mode=checkauth -> 200 success" in completed.stdout
    assert "exchange succeeded" in completed.stdout
    assert PASSWORD not in completed.stdout + completed.stderr
    assert site.modes()[-1] == "complete"


def test_cli_options_reach_client(site: StandInSite, tmp_path: Path) -> None:
    site.zip_enabled = True
    package = small_package(tmp_path)

    completed = run_cli(
        "push", site.url, str(package), "--user", USER, "--no-cookies", "--no-zip",
        "--chunk-size", "100", "--poll-interval", "0", "--deactivate",
    )  # fmt: skip

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert all("cookie" not in request.headers for request in site.requests)
    assert "exchange.zip" not in {request.query["filename"] for request in site.posts()}
    assert max(request.body_length for request in site.posts()) == 100
    assert site.modes()[-1] == "deactivate"


def test_cli_failure_exit_1(site: StandInSite, tmp_path: Path) -> None:
    package = small_package(tmp_path)

    completed = run_cli(
        "push", site.url, str(package), "--user", USER, password="wrong-secret-42"
    )

    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "exchange failed: mode=checkauth returned failure" in completed.stdout
    assert "wrong-secret-42" not in completed.stdout + completed.stderr


@pytest.mark.parametrize(
    ("args", "password"),
    [
        pytest.param(["push", "{url}", "{package}"], PASSWORD, id="missing user"),
        pytest.param(
            ["push", "{url}", "{package}", "--user", USER], None, id="missing password"
        ),
        pytest.param(
            ["push", "{url}", "{absent}", "--user", USER],
            PASSWORD,
            id="missing package",
        ),
        pytest.param(
            ["push", "ftp://127.0.0.1/x", "{package}", "--user", USER],
            PASSWORD,
            id="invalid url",
        ),
        pytest.param(
            ["push", "{url}", "{package}", "--user", USER, "--chunk-size", "0"],
            PASSWORD,
            id="invalid chunk size",
        ),
        pytest.param(
            ["push", "{url}", "{package}", "--user", USER, "--zip", "--no-zip"],
            PASSWORD,
            id="zip and no-zip",
        ),
        pytest.param(
            ["push", "{url}", "{package}", "--user", USER, "--timeout", "soon"],
            PASSWORD,
            id="invalid timeout",
        ),
    ],
)
def test_cli_bad_arguments_exit_2(
    site: StandInSite, tmp_path: Path, args: list[str], password: str | None
) -> None:
    values = {
        "url": site.url,
        "package": str(small_package(tmp_path)),
        "absent": str(tmp_path / "absent"),
    }
    filled = [arg.format(**values) for arg in args]

    completed = run_cli(*filled, password=password)

    assert completed.returncode == 2, completed.stdout + completed.stderr
    assert "error:" in completed.stderr
    assert site.requests == []
