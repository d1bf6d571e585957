"""CommerceML documents the site writes for 1C, and their atomic writing.

``write_atomically`` writes a temporary file in the target folder, flushes it to
disk with fsync, renames it over the final name with ``os.replace`` and then
fsyncs the folder, so a reader (1C's exchange, a file watcher) reads either the
previous document or the whole new one, never a partial file, even after a
crash. The temporary name starts with a dot and ends with ``.tmp``, which 1C's
file masks (``*.xml``) do not match.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.utils import timezone
from lxml import etree

# Namespace of each CommerceML version the writer produces.
NAMESPACES = {
    "2.10": "urn:1C.ru:commerceml_2",
    "3.1": "urn:1C.ru:commerceml_3",
}
ROLE_BUYER = "Покупатель"
CONTACT_PERSON_RELATION = "Контактное лицо"
# Contact types 1C:Trade Management reads from a site's counterparty document.
CONTACT_TYPE_PHONE = "ТелефонРабочий"
CONTACT_TYPE_EMAIL = "Почта"
# Namespace of the Ид of a counterparty's contact person, derived from the
# counterparty's Ид so that every document gives the same person the same Ид.
REPRESENTATIVE_ID_NAMESPACE = uuid.UUID("5b0f1c3e-6f0d-4c55-9d0e-4f7d0b9a2c61")


@dataclass(frozen=True)
class Counterparty:
    """A company as CommerceML describes it in ``Контрагенты``."""

    id: str
    name: str
    official_name: str
    inn: str
    kpp: str
    legal_address: str
    contact_person: str
    phone: str
    email: str


def _add(
    parent: etree._Element, namespace: str, tag: str, text: str = ""
) -> etree._Element:
    element = etree.SubElement(parent, f"{{{namespace}}}{tag}")
    if text:
        element.text = text
    return element


def counterparties_document(
    counterparties: Iterable[Counterparty],
    *,
    version: str = "3.1",
    created_at: datetime | None = None,
) -> bytes:
    """Build a ``КоммерческаяИнформация/Контрагенты`` document in UTF-8."""
    try:
        namespace = NAMESPACES[version]
    except KeyError:
        raise ValueError(
            f"unsupported CommerceML version {version!r}: use one of "
            + ", ".join(NAMESPACES)
        ) from None
    # 1C reads ДатаФормирования as local time without an offset.
    stamp = (created_at or timezone.localtime()).replace(microsecond=0, tzinfo=None)
    root = etree.Element(
        f"{{{namespace}}}КоммерческаяИнформация",
        nsmap={None: namespace},
        attrib={"ВерсияСхемы": version, "ДатаФормирования": stamp.isoformat()},
    )
    section = _add(root, namespace, "Контрагенты")
    for counterparty in counterparties:
        _add_counterparty(section, namespace, counterparty)
    return etree.tostring(
        root, xml_declaration=True, encoding="UTF-8", pretty_print=True
    )


def _add_counterparty(
    section: etree._Element, namespace: str, counterparty: Counterparty
) -> None:
    element = _add(section, namespace, "Контрагент")
    _add(element, namespace, "Ид", counterparty.id)
    _add(element, namespace, "Наименование", counterparty.name)
    _add(element, namespace, "ОфициальноеНаименование", counterparty.official_name)
    address = _add(element, namespace, "ЮридическийАдрес")
    _add(address, namespace, "Представление", counterparty.legal_address)
    _add(element, namespace, "ИНН", counterparty.inn)
    if counterparty.kpp:
        _add(element, namespace, "КПП", counterparty.kpp)
    contacts = _add(element, namespace, "Контакты")
    for contact_type, value in (
        (CONTACT_TYPE_PHONE, counterparty.phone),
        (CONTACT_TYPE_EMAIL, counterparty.email),
    ):
        if value:
            contact = _add(contacts, namespace, "Контакт")
            _add(contact, namespace, "Тип", contact_type)
            _add(contact, namespace, "Значение", value)
    if counterparty.contact_person:
        representatives = _add(element, namespace, "Представители")
        representative = _add(representatives, namespace, "Представитель")
        _add(representative, namespace, "Отношение", CONTACT_PERSON_RELATION)
        person_id = uuid.uuid5(REPRESENTATIVE_ID_NAMESPACE, counterparty.id)
        _add(representative, namespace, "Ид", str(person_id))
        _add(representative, namespace, "Наименование", counterparty.contact_person)
    _add(element, namespace, "Роль", ROLE_BUYER)


def check_file_name(name: str) -> str:
    """Return ``name`` if it is a plain ``.xml`` file name without folders."""
    if (
        not name.endswith(".xml")
        or name.startswith(".")
        or name != Path(name).name
        or "\\" in name
    ):
        raise ValueError(
            f"invalid outbox file name {name!r}: expected a plain name ending in .xml"
        )
    return name


def fsync_directory(directory: Path) -> None:
    """Flush a folder's entries (a rename) to disk, where the OS allows it."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # Windows cannot open folders, and its rename is durable enough
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_atomically(directory: Path, name: str, data: bytes) -> Path:
    """Write ``data`` as ``directory/name`` so readers never see a partial file."""
    check_file_name(name)
    directory.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        dir=directory, prefix=f".{name}.", suffix=".tmp"
    )
    target = directory / name
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        # mkstemp creates the file for its owner only, but the process that
        # hands documents to 1C may run as another user.
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_directory(directory)
    return target
