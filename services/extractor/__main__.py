"""``python -m services.extractor``: run the extractor until SIGTERM."""

from __future__ import annotations

from services.common.bootstrap import run_grpc_service
from services.extractor.server import serve
from services.extractor.settings import ExtractorSettings

if __name__ == "__main__":
    run_grpc_service("extractor", ExtractorSettings, serve)
