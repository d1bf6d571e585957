"""The HTTP endpoint 1C calls for the site exchange (``/exchange/1c/``).

The view authenticates, finds the exchange session, hands the request to
``protocol`` and writes the response as ``text/plain``. Whatever goes wrong
inside, the response still starts with ``failure`` and a one-line reason, because
1C cannot read an HTML error page and reports it as a broken connection.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import time
from collections.abc import Iterator

import redis
from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from freesport.exchange import protocol
from freesport.exchange.models import ExchangeSession, ExchangeStep
from freesport.exchange.uploads import UploadError

logger = logging.getLogger("freesport.exchange")

PERMISSION = "exchange.exchange_with_1c"
READ_CHUNK = 64 * 1024
_redis_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _redis_client
    if _redis_client is None:
        _redis_client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
    return _redis_client


@csrf_exempt
def exchange(request: HttpRequest) -> HttpResponse:
    started = time.monotonic()
    mode = request.GET.get("mode", "")
    session: ExchangeSession | None = None
    received = 0
    try:
        answer, session, received = _dispatch(request, mode)
    except UploadError as error:
        answer = protocol.failure(str(error))
        session = getattr(error, "session", None)
    except Exception as error:
        logger.exception("Exchange request mode=%s failed", mode)
        answer = protocol.failure(
            f"internal error ({type(error).__name__}); see the site log"
        )
    if session is not None:
        _record_step(session, request, mode, received, answer, started)
    response = HttpResponse(answer.text(), content_type="text/plain; charset=utf-8")
    if (
        mode == "checkauth"
        and answer.status == protocol.SUCCESS
        and session is not None
    ):
        response.set_cookie(
            settings.EXCHANGE_COOKIE_NAME,
            session.sessid or "",
            httponly=True,
            samesite="Lax",
            secure=request.is_secure(),
        )
    return response


def _dispatch(
    request: HttpRequest, mode: str
) -> tuple[protocol.Answer, ExchangeSession | None, int]:
    exchange_type = request.GET.get("type", "")
    if exchange_type != "catalog":
        return (
            protocol.failure(f"type={exchange_type or '(none)'} is not supported"),
            None,
            0,
        )
    if mode == "checkauth":
        if request.method not in ("GET", "POST"):
            return protocol.failure("mode=checkauth takes GET or POST"), None, 0
        return _checkauth(request)
    session = _find_session(request)
    if session is None:
        return (
            protocol.failure(
                "unknown or expired exchange session; start with mode=checkauth"
            ),
            None,
            0,
        )
    if mode == "init":
        return protocol.init(session, request.GET.get("version")), session, 0
    if mode == "file":
        if request.method != "POST":
            return (
                protocol.failure("mode=file needs a POST with the file bytes"),
                session,
                0,
            )
        counter = _Counter(request)
        try:
            answer = protocol.upload(
                session, request.GET.get("filename"), counter.chunks()
            )
        except UploadError as error:
            error.session = session  # type: ignore[attr-defined]
            raise
        return answer, session, counter.total
    if mode == "import":
        return protocol.import_file(session, request.GET.get("filename")), session, 0
    if mode == "complete":
        return protocol.complete(session), session, 0
    if mode == "deactivate":
        return protocol.deactivate(session), session, 0
    return protocol.failure(f"mode={mode or '(none)'} is not supported"), session, 0


class _Counter:
    """Read the request body in chunks, counting the bytes."""

    def __init__(self, request: HttpRequest) -> None:
        self.request = request
        self.total = 0

    def chunks(self) -> Iterator[bytes]:
        while chunk := self.request.read(READ_CHUNK):
            self.total += len(chunk)
            yield chunk


def _checkauth(
    request: HttpRequest,
) -> tuple[protocol.Answer, ExchangeSession | None, int]:
    credentials = _basic_credentials(request)
    if credentials is None:
        return (
            protocol.failure(
                "no credentials received: the request had no HTTP Basic Authorization "
                "header. If 1C sends one, a proxy in front of the site strips it."
            ),
            None,
            0,
        )
    username, password = credentials
    if _login_locked(request, username):
        lockout = settings.EXCHANGE_LOGIN_LOCKOUT_S
        reason = f"too many failed logins; try again in {lockout} s"
        return protocol.failure(reason), None, 0
    # authenticate() compares password hashes in constant time.
    user = authenticate(request, username=username, password=password)
    if user is None or not user.is_active or not user.has_perm(PERMISSION):
        logger.warning("Exchange login failed from %s", _client_address(request))
        reason = "invalid user name or password, or no exchange permission"
        return protocol.failure(reason), None, 0
    pipe = _redis().pipeline()
    pipe.delete(_throttle_key(request, username))
    pipe.decr(_throttle_key(request, ""))
    pipe.execute()
    session = protocol.start_session(_as_user(user), _client_address(request))
    logger.info(
        "Exchange session %d opened from %s", session.pk, _client_address(request)
    )
    return protocol.checkauth(session), session, 0


def _as_user(user: object) -> User:
    if not isinstance(user, User):
        kind = type(user).__name__
        raise TypeError(f"the exchange needs django.contrib.auth users, not {kind}")
    return user


def _basic_credentials(request: HttpRequest) -> tuple[str, str] | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    # 1C encodes Cyrillic user names in UTF-8; older builds use windows-1251.
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        text = decoded.decode("cp1251")
    username, separator, password = text.partition(":")
    if not separator:
        return None
    return username, password


def _login_locked(request: HttpRequest, username: str) -> bool:
    """Count this login attempt; return True when the address or name is locked.

    Every attempt is counted before the password is checked, in one atomic
    INCR, so concurrent guesses cannot slip past the limit. A successful login
    clears the user's counter. The per-address counter allows more attempts,
    because several 1C bases may share an address, and bounds guessing across
    user names.
    """
    lockout = settings.EXCHANGE_LOGIN_LOCKOUT_S
    user_key = _throttle_key(request, username)
    address_key = _throttle_key(request, "")
    pipe = _redis().pipeline()
    # SET NX starts the lockout window on the first attempt (EXPIRE NX needs
    # Redis 7; the embedded server is 6.2).
    pipe.set(user_key, 0, ex=lockout, nx=True)
    pipe.incr(user_key)
    pipe.set(address_key, 0, ex=lockout, nx=True)
    pipe.incr(address_key)
    _, user_attempts, _, address_attempts = pipe.execute()
    limit = settings.EXCHANGE_LOGIN_ATTEMPTS
    return bool(user_attempts > limit or address_attempts > limit * 4)


def _throttle_key(request: HttpRequest, username: str) -> str:
    digest = hashlib.sha256(
        f"{_client_address(request)}|{username}".encode()
    ).hexdigest()
    return f"freesport:exchange:login-failures:{digest[:32]}"


def _client_address(request: HttpRequest) -> str:
    return str(request.META.get("REMOTE_ADDR", "unknown"))


def _find_session(request: HttpRequest) -> ExchangeSession | None:
    # Many 1C builds ignore cookies and send the sessid parameter instead.
    sessid = request.COOKIES.get(settings.EXCHANGE_COOKIE_NAME) or request.GET.get(
        "sessid"
    )
    if not sessid:
        return None
    session = ExchangeSession.objects.filter(
        sessid=sessid, source=ExchangeSession.Source.HTTP
    ).first()
    if session is None:
        return None
    age = time.time() - session.created_at.timestamp()
    if age > settings.EXCHANGE_SESSION_TTL_S:
        return None
    return session


def _record_step(
    session: ExchangeSession,
    request: HttpRequest,
    mode: str,
    received: int,
    answer: protocol.Answer,
    started: float,
) -> None:
    try:
        # The checkauth response carries the session token: only its status is kept.
        summary = answer.status if mode == "checkauth" else answer.summary
        ExchangeStep.objects.create(
            session=session,
            mode=mode[:20],
            filename=request.GET.get("filename", "")[:500],
            bytes=received,
            answer=summary,
            duration_ms=int((time.monotonic() - started) * 1000),
        )
    except Exception:
        # Sending the response matters more to 1C than recording it.
        logger.exception("Could not record exchange step of session %d", session.pk)
