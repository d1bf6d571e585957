"""Helpers shared by the tests: running an import on the worker, writing small files."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from freesport.exchange.models import ExchangeSession
from worker.imports.sessions import create_session, enqueue_import

IMPORT_TIMEOUT_S = 300.0

ROOT_OPEN = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<КоммерческаяИнформация xmlns="urn:1C.ru:commerceml_3" ВерсияСхемы="3.1" '
    'ДатаФормирования="2026-01-15T10:00:00">\n'
)
ROOT_CLOSE = "</КоммерческаяИнформация>\n"


def run_import(
    paths: Sequence[Path],
    *,
    deactivate_missing: bool = True,
    queue: str | None = None,
    timeout: float = IMPORT_TIMEOUT_S,
) -> ExchangeSession:
    """Import a package on the worker and wait until its session has finished."""
    session = create_session(list(paths), deactivate_missing=deactivate_missing)
    enqueue_import(session, queue=queue)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        session.refresh_from_db()
        if session.is_finished:
            return session
        time.sleep(0.1)
    raise AssertionError(
        f"session {session.pk} still {session.status} after {timeout} s"
    )


def write_xml(
    path: Path, body: str, *, encoding: str = "utf-8", bom: bool = False
) -> Path:
    """Write a CommerceML document with ``body`` inside the root element."""
    header = ROOT_OPEN.replace('encoding="UTF-8"', f'encoding="{encoding}"')
    data = (header + body + ROOT_CLOSE).encode(encoding)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


def classifier(groups: str = "", extra: str = "") -> str:
    tree = f"<Группы>{groups}</Группы>" if groups else ""
    return f"<Классификатор><Ид>cls</Ид><Наименование>К</Наименование>{tree}{extra}</Классификатор>\n"


def group(external_id: str, name: str, children: str = "") -> str:
    nested = f"<Группы>{children}</Группы>" if children else ""
    return f"<Группа><Ид>{external_id}</Ид><Наименование>{name}</Наименование>{nested}</Группа>"


def catalog(goods: str, *, only_changes: bool = False) -> str:
    flag = "true" if only_changes else "false"
    return (
        f'<Каталог СодержитТолькоИзменения="{flag}"><Ид>cat</Ид>'
        f"<ИдКлассификатора>cls</ИдКлассификатора><Наименование>Каталог</Наименование>"
        f"<Товары>{goods}</Товары></Каталог>\n"
    )


def product(
    external_id: str,
    name: str = "",
    *,
    group_id: str = "",
    sku: str = "",
    extra: str = "",
) -> str:
    groups = f"<Группы><Ид>{group_id}</Ид></Группы>" if group_id else ""
    return (
        f"<Товар><Ид>{external_id}</Ид><Артикул>{sku}</Артикул>"
        f"<Наименование>{name or external_id}</Наименование>{groups}{extra}</Товар>\n"
    )


def offers_package(offers: str, *, only_changes: bool = False, head: str = "") -> str:
    flag = "true" if only_changes else "false"
    return (
        f'<ПакетПредложений СодержитТолькоИзменения="{flag}"><Ид>pkg</Ид>'
        f"<Наименование>Пакет</Наименование><ИдКаталога>cat</ИдКаталога>{head}"
        f"<Предложения>{offers}</Предложения></ПакетПредложений>\n"
    )


def offer(external_id: str, *, name: str = "", inner: str = "") -> str:
    title = f"<Наименование>{name}</Наименование>" if name else ""
    return f"<Предложение><Ид>{external_id}</Ид>{title}{inner}</Предложение>\n"
