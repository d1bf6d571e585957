"""Emulator of 1C:Enterprise's side of the 1C site-exchange HTTP protocol.

It uploads a CommerceML package to a site's exchange URL the way 1C does, so
the site's endpoint can be tested without 1C::

    from onec_emulator import ExchangeClient, print_transcript

    client = ExchangeClient("http://127.0.0.1:8000/exchange/1c/", "user", "password")
    result = client.push(Path("package"), complete=True)
    print_transcript(result)

The command line does the same: ``python -m onec_emulator push --help``.
"""

from onec_emulator.client import (
    Exchange,
    ExchangeClient,
    ExchangeError,
    ExchangeResult,
    print_transcript,
)
from onec_emulator.package import PackageError, PackageFile, collect_package

__all__ = [
    "Exchange",
    "ExchangeClient",
    "ExchangeError",
    "ExchangeResult",
    "PackageError",
    "PackageFile",
    "collect_package",
    "print_transcript",
]
