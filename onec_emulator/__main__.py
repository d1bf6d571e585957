"""Entry point of ``python -m onec_emulator``."""

from onec_emulator.cli import main

raise SystemExit(main())
