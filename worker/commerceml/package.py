"""Exchange packages: recognising 1C's files and putting them in import order.

A package is a directory, a list of files or a zip. 1C names its files
``import.xml``, ``offers.xml`` and, in segmented exports, ``goods_1_2_<uuid>.xml``
or ``propertiesGoods_1_1_<uuid>.xml``; Bitrix-style exports write ``import0_1.xml``.
A file whose name says nothing is recognised by the first section under its root.
"""

from __future__ import annotations

import re
import shutil
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lxml import etree

from worker.commerceml.reader import PROLOG_SCAN_BYTES, check_prolog, local_name

# Import rank of each kind: a file may only refer to what lower ranks created.
KIND_RANK = {
    "groups": 0,
    "propertiesgoods": 1,
    "propertiesoffers": 1,
    "pricelists": 2,
    "storages": 2,
    "units": 2,
    "import": 3,
    "goods": 4,
    "offers": 5,
    "prices": 6,
    "rests": 7,
    "contragents": 8,
    "orders": 8,
    "documents": 8,
}
# Kinds the catalogue import reads; the others belong to other exchanges.
CATALOG_KINDS = frozenset(kind for kind, rank in KIND_RANK.items() if rank < 8)

_NAME = re.compile(r"^(?P<kind>[a-z]+?)(?P<suffix>[_\d][\w.-]*)?\.xml$", re.IGNORECASE)
_SEGMENT = re.compile(r"(\d+)")
_ROOT_SECTION_KIND = {
    "Классификатор": "import",
    "Каталог": "import",
    "ПакетПредложений": "offers",
    "Документ": "documents",
    "Контейнер": "documents",
    "Контрагенты": "contragents",
}


class PackageError(Exception):
    """A package that cannot be opened: missing paths, an unsafe or oversized zip."""


@dataclass(frozen=True, slots=True)
class PackageFile:
    path: Path
    # Name relative to the package root, as shown to operators.
    name: str
    kind: str

    @property
    def rank(self) -> int:
        return KIND_RANK.get(self.kind, 9)

    @property
    def is_catalog(self) -> bool:
        return self.kind in CATALOG_KINDS


def kind_from_name(name: str) -> str | None:
    """Return the kind 1C's file name gives, or None when the name says nothing."""
    match = _NAME.match(PurePosixPath(name).name)
    if not match:
        return None
    kind = match.group("kind").lower()
    return kind if kind in KIND_RANK else None


def kind_from_content(path: Path) -> str | None:
    """Return the kind given by the first section under the root element."""
    with open(path, "rb") as raw:
        check_prolog(path, raw.read(PROLOG_SCAN_BYTES))
    depth = 0
    try:
        for event, element in etree.iterparse(
            str(path),
            events=("start", "end"),
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
        ):
            if event == "end":
                depth -= 1
                continue
            depth += 1
            if depth == 2:
                kind = _ROOT_SECTION_KIND.get(local_name(element.tag))
                if kind:
                    return kind
            if depth == 1 and local_name(element.tag) != "КоммерческаяИнформация":
                return None
    except etree.XMLSyntaxError:
        return None
    return None


def _sort_key(file: PackageFile) -> tuple[int, list[int], str]:
    segments = [int(n) for n in _SEGMENT.findall(PurePosixPath(file.name).stem)[:3]]
    return file.rank, segments, file.name.lower()


def collect(paths: Iterable[Path], *, root: Path | None = None) -> list[PackageFile]:
    """Recognise the XML files among ``paths`` (files or directories) in import order.

    Pictures and other non-XML files are left where they are: the importer finds
    them by the relative paths in ``Картинка``. Files neither the name nor the
    content identifies are returned with kind ``unknown``.
    """
    found: list[PackageFile] = []
    for path in paths:
        if not path.exists():
            raise PackageError(f"{path}: no such file or directory")
        base = root or (path if path.is_dir() else path.parent)
        candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
        for candidate in candidates:
            if candidate.is_dir() or candidate.suffix.lower() != ".xml":
                continue
            if "import_files" in candidate.relative_to(base).parts:
                continue
            name = candidate.relative_to(base).as_posix()
            kind = kind_from_name(name) or kind_from_content(candidate) or "unknown"
            found.append(PackageFile(candidate, name, kind))
    return sorted(found, key=_sort_key)


@dataclass(frozen=True, slots=True)
class ZipLimits:
    max_entries: int
    max_bytes: int
    max_ratio: int


def safe_member_path(name: str) -> PurePosixPath:
    """Return a zip member's relative path, or raise PackageError if it could escape."""
    if "\x00" in name:
        raise PackageError(f"zip entry {name!r} contains a NUL byte")
    if "\\" in name:
        raise PackageError(f"zip entry {name!r} contains a backslash")
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", name):
        raise PackageError(f"zip entry {name!r} points outside the package folder")
    return path


def extract_zip(archive: Path, target: Path, limits: ZipLimits) -> Path:
    """Unpack ``archive`` into ``target``, refusing zip slip and zip bombs."""
    try:
        bundle = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as error:
        raise PackageError(f"{archive.name}: not a valid zip file ({error})") from error
    with bundle:
        members = bundle.infolist()
        if len(members) > limits.max_entries:
            raise PackageError(
                f"{archive.name}: {len(members)} entries, more than the limit of "
                f"{limits.max_entries}"
            )
        declared = sum(member.file_size for member in members)
        if declared > limits.max_bytes:
            raise PackageError(
                f"{archive.name}: unpacks to {declared} bytes, more than the limit of "
                f"{limits.max_bytes}"
            )
        target.mkdir(parents=True, exist_ok=True)
        for member in members:
            try:
                relative = safe_member_path(member.filename)
            except PackageError as error:
                raise PackageError(f"{archive.name}: {error}") from error
            if member.is_dir():
                continue
            if member.compress_size and member.file_size / member.compress_size > (
                limits.max_ratio
            ):
                raise PackageError(
                    f"{archive.name}: entry {member.filename!r} compresses "
                    f"{member.file_size / member.compress_size:.0f}:1, more than the "
                    f"limit of {limits.max_ratio}:1"
                )
            destination = target.joinpath(*relative.parts)
            try:
                destination.parent.mkdir(parents=True, exist_ok=True)
                _copy_limited(bundle, member, destination)
            except OSError as error:
                raise PackageError(
                    f"{archive.name}: entry {member.filename!r} cannot be unpacked "
                    f"({error.strerror}); re-create the zip with plain file names"
                ) from error
    return target


def _copy_limited(bundle: zipfile.ZipFile, member: zipfile.ZipInfo, dest: Path) -> None:
    # The declared size is checked before; this stops an entry that lies about it.
    written = 0
    # A new inode: the old file may be hard-linked into MEDIA_ROOT.
    dest.unlink(missing_ok=True)
    with bundle.open(member) as source, open(dest, "wb") as sink:
        while chunk := source.read(1024 * 1024):
            written += len(chunk)
            if written > member.file_size:
                raise PackageError(
                    f"zip entry {member.filename!r} is larger than its declared size"
                )
            sink.write(chunk)


def copy_into(paths: Iterable[Path], target: Path) -> None:
    """Copy files and directories into ``target``, keeping directory layout."""
    target.mkdir(parents=True, exist_ok=True)
    for path in paths:
        if path.is_dir():
            shutil.copytree(path, target / path.name, dirs_exist_ok=True)
        else:
            shutil.copy2(path, target / path.name)
