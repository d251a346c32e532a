"""``python -m services.loader``: run the loader until SIGTERM."""

from __future__ import annotations

from services.common.bootstrap import run_grpc_service
from services.loader.server import serve
from services.loader.settings import LoaderSettings

if __name__ == "__main__":
    run_grpc_service("loader", LoaderSettings, serve)
