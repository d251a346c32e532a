"""Units: what ``Discover`` lists and what ``Pull`` reads.

A file is one unit, except a zip archive (not a workbook), which becomes one unit per member
matching ``source.members`` (nested zips included). Pulling a unit makes its bytes local (a
spool file for remote objects; a member of a remote zip is read in place with ranged reads
when the store offers them), unpacks the member or the gzip/bz2/xz stream into a private
temporary file with the zip-bomb limits, and hands the path and the format to a reader.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from services.common.spec.source import Source
from services.extractor import archives
from services.extractor.readers import COMPRESSED, detect_format
from services.extractor.settings import ExtractorSettings
from services.extractor.sources import backend_for
from services.extractor.sources.base import DiscoveredUnit


def unpack_limits(settings: ExtractorSettings) -> archives.UnpackLimits:
    return archives.UnpackLimits(
        max_unpacked_bytes=settings.limits.max_unpacked_bytes,
        max_ratio=settings.limits.max_compression_ratio,
        workdir=settings.work_dir,
    )


def discover(source: Source, settings: ExtractorSettings) -> list[DiscoveredUnit]:
    """The units of ``source``: files, and the matching members of zip archives."""
    backend = backend_for(source.uri, settings)
    units: list[DiscoveredUnit] = []
    for unit in backend.discover(source):
        if unit.format not in ("zip", "auto"):
            units.append(unit)
            continue
        # Remote objects are read in place where the store allows ranged reads: the member
        # list costs a few requests, not a download.
        with backend.open_seekable(unit.uri) as archive:
            if not archives.is_zip(archive):
                units.append(unit)
                continue
            members = archives.list_members(
                archive, source.members, unpack_limits(settings), unit.id, source.format
            )
        units.extend(
            DiscoveredUnit(
                id=f"{unit.id}{archives.NESTED}{member.path}",
                uri=unit.uri,
                member=member.path,
                fingerprint=f"{unit.fingerprint};crc={member.crc:08x};size={member.size}",
                size_bytes=member.size,
                format=member.format,
            )
            for member in members
        )
    return units


@contextlib.contextmanager
def materialize(
    uri: str, member: str, fmt: str, source: Source, settings: ExtractorSettings
) -> Iterator[tuple[Path, str, str]]:
    """(local path, format to read it as, name to report in errors) for one unit."""
    backend = backend_for(uri, settings)
    limits = unpack_limits(settings)
    with contextlib.ExitStack() as stack:
        name = PurePosixPath(uri).name
        if member:
            label = f"{uri}{archives.NESTED}{member}"
            # One member costs the archive's directory and that member's bytes (ranged reads
            # where the store allows them); a whole-object download per member would fetch a
            # zip of 30 daily parts 30 times over.
            archive = stack.enter_context(backend.open_seekable(uri))
            path = stack.enter_context(archives.extract_member(archive, member, limits, uri))
            name = PurePosixPath(member.split(archives.NESTED)[-1]).name
        else:
            path = stack.enter_context(backend.local_path(uri))
            label = str(path) if uri.startswith("file://") else uri
        kind = fmt if fmt in COMPRESSED else None
        if kind is None and fmt == "auto":
            detected = detect_format(path, "auto", source.options)
            kind = detected if detected in COMPRESSED else None
        if kind is not None:
            path = stack.enter_context(archives.decompress(path, kind, name, limits, label))
            name = PurePosixPath(name).stem
            fmt = "auto"
        if fmt == "auto" and source.format not in ("auto", "zip", *COMPRESSED):
            fmt = source.format
        yield path, fmt, label
