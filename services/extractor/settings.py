"""Extractor settings (env ``SLUICE_<SECTION>__<KEY>``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from services.common.settings import (
    GrpcServerSettings,
    MetricsSettings,
    Section,
    ServiceSettings,
    service_settings_config,
)


class LimitSettings(Section):
    batch_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024)
    """Target size of one record batch on the wire."""
    max_line_bytes: int = Field(default=1024 * 1024, ge=1024)
    """Longest record (line, or lines joined by quoted newlines) accepted before the unit fails
    with a clear error. It is also the text parser's block size, and the parser reads up to 32
    blocks ahead, so it sets the memory one stream uses (1 MiB: about 290 MB peak RSS on a
    1 GB csv, 2 MiB: about 380 MB, at the same speed): raise it with the pod's memory limit."""
    excel_in_memory_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    """Largest worksheet XML (uncompressed, in the xlsx/xlsm file) read with calamine, which
    holds a whole sheet in memory (about 1.6 bytes per byte of XML). Bigger workbooks are
    streamed row by row: flat memory, about four times slower."""
    excel_decode_memory_bytes: int = Field(default=768 * 1024 * 1024, ge=64 * 1024 * 1024)
    """Memory (data segment) one in-memory Excel decode may use. calamine holds every cell of a
    sheet's used range, blank ones included, so one stray value in XFD1048576 asks for hundreds
    of GiB: the decode runs in a child process capped at this, and a workbook that needs more
    is streamed (xlsx) or fails with a clear error (xls, ods), while the service keeps serving.
    Decodes share the container's memory with the service: see ``memory_limit_bytes``."""
    memory_limit_bytes: int | None = Field(default=None, ge=64 * 1024 * 1024)
    """Memory the extractor's container may use; None: its cgroup's limit (on Kubernetes, the
    pod's memory limit). In-memory Excel decodes are planned within it: each may use
    ``excel_decode_memory_bytes`` or what the limit leaves beside ``service_memory_bytes``,
    whichever is less (64 MiB at the least), and as many run at once as fit; other workbooks
    wait for their turn. With no limit found, decodes are not budgeted."""
    service_memory_bytes: int = Field(default=512 * 1024 * 1024, ge=0)
    """Memory kept for the service itself (about 160 MB idle), the decoders' fork server
    (about 80 MB of its own) and the text streams; Excel decodes share the rest of the memory
    limit. With one Arrow thread (the chart's one CPU), the service peaked at 300 MB streaming
    one 170 MB csv and 437 MB streaming three at once: the default holds about three; raise it
    for an extractor that serves more."""
    max_unpacked_bytes: int = Field(default=4 * 1024**3, ge=1024)
    """Largest size one zip member or gzip/bz2/xz file may unpack to (zip-bomb guard)."""
    max_compression_ratio: float = Field(default=200.0, gt=1)
    """Largest unpacked/packed size ratio accepted for members over 1 MiB (zip-bomb guard)."""
    max_download_bytes: int = Field(default=10 * 1024**3, ge=1024)
    """Largest object fetched over HTTP(S); bigger downloads stop with an error."""


class HttpSourceSettings(Section):
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    """Time allowed to connect to an ``https://`` source."""
    read_timeout_seconds: float = Field(default=60.0, gt=0)
    """Time allowed between two chunks of a download."""
    user_agent: str = "sluice-extractor"
    """User-Agent header sent to HTTP sources."""


class GcsSourceSettings(Section):
    project: str | None = None
    """Google Cloud project of the storage client; None: from the credentials / environment."""
    emulator_host: str | None = None
    """Storage emulator URL (tests, local runs), e.g. ``http://127.0.0.1:9023``; sets
    ``STORAGE_EMULATOR_HOST`` for the client and uses anonymous credentials."""
    chunk_bytes: int = Field(default=8 * 1024 * 1024, ge=256 * 1024)
    """Size of one ranged read when streaming an object to the work directory."""


class ExtractorSettings(ServiceSettings):
    """Everything the extractor reads from its environment."""

    model_config = service_settings_config()

    grpc: GrpcServerSettings = GrpcServerSettings(port=50051)
    """gRPC server."""
    metrics: MetricsSettings = MetricsSettings(port=9101)
    """Prometheus side port."""
    limits: LimitSettings = LimitSettings()
    """Reader limits."""
    http: HttpSourceSettings = HttpSourceSettings()
    """``https://`` sources."""
    gcs: GcsSourceSettings = GcsSourceSettings()
    """``gs://`` sources."""
    work_dir: Path | None = None
    """Where remote objects and archive members are spooled while a unit is read (a private
    directory per unit, removed afterwards); None: the system temporary directory. On
    Kubernetes mount an emptyDir here, sized for the largest unit."""
    secrets_dir: Path | None = None
    """Directory of secret files (one file per ``${NAME}`` reference), e.g. a mounted Secret."""
