#!/usr/bin/env python
import os
import sys

# Commands that never touch Redis, so they do not start the embedded server.
NO_REDIS_COMMANDS = {
    "makemigrations",
    "migrate",
    "check",
    "help",
    "compilemessages",
    "makemessages",
    "collectstatic",
    "dbshell",
}


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.management import execute_from_command_line

    if len(sys.argv) > 1 and sys.argv[1] not in NO_REDIS_COMMANDS:
        from config.runtime import ensure_services

        ensure_services()
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
