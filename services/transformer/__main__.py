"""``python -m services.transformer``: run the transformer until SIGTERM."""

from __future__ import annotations

from services.common.bootstrap import run_grpc_service
from services.transformer.server import serve
from services.transformer.settings import TransformerSettings

if __name__ == "__main__":
    run_grpc_service("transformer", TransformerSettings, serve)
