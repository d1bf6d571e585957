"""Exchange packages: the files 1C uploads, their names, import order and zip."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, TypeAlias

PathInput: TypeAlias = str | os.PathLike[str]

# Pictures and other attachments live in this folder. They are uploaded but
# never named in a mode=import request.
ATTACHMENTS_FOLDER = "import_files"


class PackageError(ValueError):
    """Invalid package: a missing path, duplicate names or no files at all."""


@dataclass(frozen=True)
class PackageFile:
    """One file of a package."""

    name: str  # package-relative POSIX path, sent as filename=
    path: Path


def collect_package(package: PathInput | Sequence[PathInput]) -> list[PackageFile]:
    """List the files of a package, sorted by name.

    ``package`` is a folder, a file, or a sequence of files and folders. A
    folder's files are named relative to the folder, and a file is named after
    itself, which is its path relative to its own parent folder.

    Raises PackageError when a path does not exist, two files get the same name,
    or there is no file at all.
    """
    if isinstance(package, str | os.PathLike):
        inputs = [Path(package)]
    else:
        inputs = [Path(item) for item in package]

    by_name: dict[str, PackageFile] = {}
    for path in inputs:
        for item in _files_of(path):
            earlier = by_name.get(item.name)
            if earlier is not None:
                raise PackageError(
                    f"two package files have the name {item.name!r}: "
                    f"{earlier.path} and {item.path}; pass them in separate pushes"
                )
            by_name[item.name] = item

    if not by_name:
        listed = ", ".join(str(path) for path in inputs) or "(nothing)"
        raise PackageError(f"package contains no files: {listed}")
    return [by_name[name] for name in sorted(by_name)]


def _files_of(path: Path) -> list[PackageFile]:
    if path.is_file():
        return [PackageFile(name=path.name, path=path)]
    if not path.is_dir():
        raise PackageError(f"package path not found: {path}")

    files = []
    # os.walk does not follow symbolic links to folders, so a link loop cannot
    # make the package endless.
    for folder, subfolders, names in os.walk(path):
        subfolders.sort()
        for name in sorted(names):
            file_path = Path(folder) / name
            if file_path.is_file():
                relative = file_path.relative_to(path).as_posix()
                files.append(PackageFile(name=relative, path=file_path))
    return files


def import_names(files: Sequence[PackageFile]) -> list[str]:
    """Return the names to send with mode=import: XML files outside import_files/.

    The order is the sorted order of the names.
    """
    names = []
    for item in files:
        relative = PurePosixPath(item.name)
        if relative.suffix.lower() != ".xml":
            continue
        if ATTACHMENTS_FOLDER in relative.parts[:-1]:
            continue
        names.append(item.name)
    return sorted(names)


def write_zip(files: Sequence[PackageFile], target: IO[bytes]) -> None:
    """Write the files into a deflate zip under their package names."""
    # strict_timestamps=False stores files dated before 1980 instead of failing.
    with zipfile.ZipFile(
        target, "w", compression=zipfile.ZIP_DEFLATED, strict_timestamps=False
    ) as archive:
        for item in files:
            archive.write(item.path, arcname=item.name)
