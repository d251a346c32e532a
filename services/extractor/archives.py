"""Archives: zip members as units (nested zips too) and gzip / bz2 / xz single files.

Safety rules, because archives come from outside:

- **zip slip**: a member's name is never used as a filesystem path. Members are copied to a
  fixed file name inside a private temporary directory (``mkdtemp``, mode 0700), and members
  whose names are absolute or contain ``..`` are refused outright.
- **zip bombs**: before unpacking, the declared size and compression ratio are checked against
  the limits; while unpacking, the bytes actually written are counted too (declared sizes can
  lie) and the copy stops as soon as a limit is crossed, before the disk fills.
- ``__MACOSX/`` resource forks, ``.DS_Store`` and directory entries are not units.
"""

from __future__ import annotations

import bz2
import contextlib
import fnmatch
import gzip
import lzma
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from services.common.errors import BadInput
from services.extractor.readers import format_by_name
from services.extractor.readers.magic import ZIP_MAGIC
from services.extractor.spool import safe_suffix, spool_dir

NESTED = "!"
"""Separator of nested member paths in a unit's ``member`` (``inner.zip!day1.csv``)."""
_COPY_CHUNK = 1024 * 1024
_RATIO_FLOOR = 1024 * 1024  # small members may compress absurdly well (a run of zeros)


@dataclass(frozen=True)
class UnpackLimits:
    """Zip-bomb limits (from the extractor settings)."""

    max_unpacked_bytes: int = 4 * 1024**3
    max_ratio: float = 200.0
    workdir: Path | None = None


@dataclass(frozen=True)
class Member:
    """One readable member of a (possibly nested) zip."""

    path: str
    size: int
    crc: int
    format: str


def is_zip(source: IO[bytes]) -> bool:
    magic = source.read(4)
    source.seek(0)
    return magic.startswith(ZIP_MAGIC)


def _unsafe(name: str) -> bool:
    pure = PurePosixPath(name.replace("\\", "/"))
    return pure.is_absolute() or ".." in pure.parts or (len(name) > 1 and name[1] == ":")


def _ignored(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return (
        name.endswith("/")
        or "__MACOSX" in parts
        or parts[-1] in (".DS_Store", "Thumbs.db")
        or parts[-1].startswith("._")
    )


def _matches(name: str, pattern: str | None) -> bool:
    if pattern is None:
        return True
    return fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(PurePosixPath(name).name, pattern)


def _open_zip(source: Path | IO[bytes], label: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise BadInput(f"not a readable zip archive ({exc})", file=label) from None


def _check_declared(info: zipfile.ZipInfo, limits: UnpackLimits, label: str) -> None:
    if info.flag_bits & 0x1:
        raise BadInput(f"zip member {info.filename!r} is encrypted", file=label)
    if info.file_size > limits.max_unpacked_bytes:
        raise BadInput(
            f"zip member {info.filename!r} unpacks to {info.file_size} bytes, over the limit of "
            f"{limits.max_unpacked_bytes} (SLUICE_LIMITS__MAX_UNPACKED_BYTES)",
            file=label,
        )
    if info.file_size > _RATIO_FLOOR and info.file_size > limits.max_ratio * max(
        info.compress_size, 1
    ):
        raise BadInput(
            f"zip member {info.filename!r} has a compression ratio of "
            f"{info.file_size / max(info.compress_size, 1):.0f}:1, over the limit of "
            f"{limits.max_ratio:.0f}:1 (a zip bomb?; SLUICE_LIMITS__MAX_COMPRESSION_RATIO)",
            file=label,
        )


def list_members(
    path: Path | IO[bytes],
    pattern: str | None,
    limits: UnpackLimits,
    label: str,
    declared: str = "auto",
) -> list[Member]:
    """Readable members of the zip at ``path`` matching ``pattern``, nested zips expanded."""
    found: list[Member] = []
    with _open_zip(path, label) as archive:
        for info in archive.infolist():
            name = info.filename
            if info.is_dir() or _ignored(name):
                continue
            if _unsafe(name):
                raise BadInput(
                    f"zip member {name!r} has an absolute or '..' path; refusing the archive",
                    file=label,
                )
            if format_by_name(name) == "zip":
                _check_declared(info, limits, label)
                with spool_dir(limits.workdir) as tmp:
                    inner = _copy_member(archive, info, tmp / "nested.zip", limits, label)
                    for member in list_members(
                        inner, pattern, limits, f"{label}{NESTED}{name}", declared
                    ):
                        found.append(
                            Member(
                                f"{name}{NESTED}{member.path}",
                                member.size,
                                member.crc,
                                member.format,
                            )
                        )
                continue
            if not _matches(name, pattern):
                continue
            fmt = declared if declared not in ("auto", "zip") else format_by_name(name) or "auto"
            found.append(Member(name, info.file_size, info.CRC, fmt))
    return found


def _copy_limited(source: IO[bytes], target: Path, limits: UnpackLimits, label: str,
                  packed_size: int) -> Path:  # fmt: skip
    written = 0
    with target.open("wb") as out:
        while chunk := source.read(_COPY_CHUNK):
            written += len(chunk)
            if written > limits.max_unpacked_bytes:
                raise BadInput(
                    f"unpacks to more than {limits.max_unpacked_bytes} bytes "
                    "(SLUICE_LIMITS__MAX_UNPACKED_BYTES); refused",
                    file=label,
                )
            if written > _RATIO_FLOOR and written > limits.max_ratio * max(packed_size, 1):
                raise BadInput(
                    f"compression ratio over {limits.max_ratio:.0f}:1 (a zip bomb?); refused",
                    file=label,
                )
            out.write(chunk)
    return target


def _copy_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, limits: UnpackLimits, label: str
) -> Path:
    try:
        with archive.open(info) as source:
            return _copy_limited(
                source, target, limits, f"{label}{NESTED}{info.filename}", info.compress_size
            )
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise BadInput(
            f"zip member {info.filename!r} is corrupt or truncated ({exc})", file=label
        ) from None
    except NotImplementedError as exc:
        raise BadInput(f"zip member {info.filename!r}: {exc}", file=label) from None


@contextlib.contextmanager
def extract_member(
    path: Path | IO[bytes], member: str, limits: UnpackLimits, label: str
) -> Iterator[Path]:
    """The bytes of ``member`` (``a.zip!b.csv`` for nested) in a private temporary file;
    ``path`` is the archive, a local file or a seekable reader."""
    with spool_dir(limits.workdir) as tmp:
        current: Path | IO[bytes] = path
        current_label = label
        parts = member.split(NESTED)
        for depth, name in enumerate(parts):
            with _open_zip(current, current_label) as archive:
                try:
                    info = archive.getinfo(name)
                except KeyError:
                    raise BadInput(
                        f"no member {name!r} in the archive", file=current_label
                    ) from None
                _check_declared(info, limits, current_label)
                target = tmp / f"m{depth}{safe_suffix(name)}"
                current = _copy_member(archive, info, target, limits, current_label)
            current_label = f"{current_label}{NESTED}{name}"
        assert isinstance(current, Path)  # a member name has at least one part
        yield current


def _open_compressed(path: Path, kind: str) -> Any:
    if kind == "gzip":
        return gzip.open(path, "rb")
    if kind == "bz2":
        return bz2.open(path, "rb")
    return lzma.open(path, "rb")


@contextlib.contextmanager
def decompress(
    path: Path, kind: str, name: str, limits: UnpackLimits, label: str
) -> Iterator[Path]:
    """A gzip / bz2 / xz file unpacked to a private temporary file named like the inner file."""
    inner_name = PurePosixPath(name).stem  # data.csv.gz -> data.csv
    with spool_dir(limits.workdir) as tmp:
        target = tmp / f"inner{safe_suffix(inner_name)}"
        try:
            with _open_compressed(path, kind) as source:
                _copy_limited(source, target, limits, label, path.stat().st_size)
        except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
            raise BadInput(f"corrupt or truncated {kind} data ({exc})", file=label) from None
        yield target
