"""Run the whole stack locally and import a generated sample package through it.

``make run`` calls this: it starts the embedded Redis server (unless ``REDIS_URL``
is set), then web, worker, beat and Flower from the ``Procfile`` under honcho,
sends a generated CommerceML package to the site's 1C exchange endpoint with the
1C emulator, lets the worker import it and prints where to look. It keeps the
stack up until Ctrl-C (or exits after the import with ``--once``), then stops
every process and the Redis server it started.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WORKER_WAIT_S = 60.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--goods", type=int, default=2000, help="goods in the sample package"
    )
    parser.add_argument(
        "--sample-dir", type=Path, default=BASE_DIR / "var" / "sample-package"
    )
    parser.add_argument("--once", action="store_true", help="stop after the import")
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.conf import settings

    embedded = settings.EMBEDDED_REDIS
    started_redis = embedded.ensure_running() if embedded is not None else False
    env = (
        dict(os.environ, REDIS_URL=settings.REDIS_URL)
        if embedded is None
        else dict(os.environ)
    )
    # SIGTERM and SIGHUP stop the stack like Ctrl-C, so no process is orphaned.
    for stop_signal in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop_signal, _raise_interrupt)
    stack = subprocess.Popen(
        [str(BIN / "honcho"), "start", "-f", str(BASE_DIR / "Procfile")],
        cwd=BASE_DIR,
        env=env,
        start_new_session=True,
    )
    try:
        password_file = _ensure_admin(settings.VAR_DIR)
        package = _ensure_sample(args.sample_dir, args.goods)
        _wait_for_worker(stack)
        code = _push_through_exchange(package, settings, stack)
        _print_where_to_look(password_file, code, stays_up=not args.once)
        if not args.once:
            stack.wait()
        return code if code in (0, 2) else 1
    except KeyboardInterrupt:
        return 0
    finally:
        _stop(stack)
        if started_redis and embedded is not None:
            embedded.stop()


def _ensure_admin(var_dir: Path) -> Path:
    """Create the ``admin`` superuser once; its password goes to a private file."""
    from django.contrib.auth import get_user_model

    password_file = var_dir / "admin-password"
    user_model = get_user_model()
    if not user_model.objects.filter(username="admin").exists():
        password = secrets.token_urlsafe(12)
        user_model.objects.create_superuser("admin", "", password)
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
    return password_file


def _ensure_sample(folder: Path, goods: int) -> Path:
    marker = folder / f".goods-{goods}"
    if not marker.exists():
        from worker.commerceml.sample import write_sample_package

        # A package of another size may be there: segments must not mix.
        shutil.rmtree(folder, ignore_errors=True)
        print(f"Writing a sample package with {goods} goods to {folder}", flush=True)
        write_sample_package(folder, goods)
        marker.touch()
    return folder


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _check_alive(stack: subprocess.Popen[bytes]) -> None:
    if stack.poll() is not None:
        raise SystemExit(
            "the Procfile processes stopped (see their output above, for example a "
            "port already in use; set WEB_PORT or FLOWER_PORT)"
        )


def _push_through_exchange(
    package: Path, settings: Any, stack: subprocess.Popen[bytes]
) -> int:
    """Send the package to the exchange endpoint as 1C does; return an exit code."""
    from freesport.exchange.models import ExchangeSession
    from freesport.exchange.summary import summary_lines
    from onec_emulator import ExchangeClient, print_transcript

    user, password = _ensure_exchange_user(settings.VAR_DIR)
    url = (
        f"http://127.0.0.1:{os.environ.get('WEB_PORT', '8000')}/{settings.EXCHANGE_URL}"
    )
    _wait_for_web(url, stack)
    print(f"\nSending {package} to {url} with the 1C emulator…", flush=True)
    result = ExchangeClient(url, user, password).push(package, complete=True)
    print_transcript(result)
    session = ExchangeSession.objects.filter(sessid=result.sessid).first()
    if session is not None:
        session.refresh_from_db()
        print("\n".join(summary_lines(session)), flush=True)
    if not result.ok or session is None:
        return 1
    return 0 if session.status == ExchangeSession.Status.SUCCEEDED else 2


def _ensure_exchange_user(var_dir: Path) -> tuple[str, str]:
    """Create the ``onec`` user 1C logs in as; its password goes to a private file."""
    from django.contrib.auth.models import Permission, User

    password_file = var_dir / "onec-password"
    user = User.objects.filter(username="onec").first()
    if user is None or not password_file.exists():
        password = secrets.token_urlsafe(12)
        user = user or User.objects.create_user("onec")
        user.set_password(password)
        user.save()
        user.user_permissions.add(Permission.objects.get(codename="exchange_with_1c"))
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
    return "onec", password_file.read_text().strip()


def _wait_for_web(url: str, stack: subprocess.Popen[bytes]) -> None:
    import requests

    deadline = time.monotonic() + WORKER_WAIT_S
    while time.monotonic() < deadline:
        _check_alive(stack)
        try:
            requests.get(url, timeout=2)
            return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise SystemExit(
        f"the web process did not respond at {url} within {WORKER_WAIT_S:.0f} s"
    )


def _wait_for_worker(stack: subprocess.Popen[bytes]) -> None:
    from config.celery import app

    deadline = time.monotonic() + WORKER_WAIT_S
    while time.monotonic() < deadline:
        _check_alive(stack)
        if app.control.ping(timeout=1.0, limit=1):
            return
    raise SystemExit(f"no Celery worker responded within {WORKER_WAIT_S:.0f} s")


def _print_where_to_look(password_file: Path, code: int, *, stays_up: bool) -> None:
    web_port = os.environ.get("WEB_PORT", "8000")
    flower_port = os.environ.get("FLOWER_PORT", "5555")
    result = {0: "imported", 2: "imported with skipped items"}.get(code, "failed")
    print(
        f"\nSample package {result}.\n"
        f"  Admin:   http://127.0.0.1:{web_port}/admin/  (user admin, password in "
        f"{password_file})\n"
        f"  Flower:  http://127.0.0.1:{flower_port}/\n"
        "  Status:  .venv/bin/python manage.py onec_status",
        flush=True,
    )
    print("Press Ctrl-C to stop." if stays_up else "Stopping (--once).", flush=True)


def _stop(stack: subprocess.Popen[bytes]) -> None:
    if stack.poll() is not None:
        return
    os.killpg(stack.pid, signal.SIGTERM)
    try:
        stack.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(stack.pid, signal.SIGKILL)
        stack.wait()


if __name__ == "__main__":
    raise SystemExit(main())
