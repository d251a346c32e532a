"""``python -m services.orchestrator``: serve the HTTP API with uvicorn."""

from __future__ import annotations

import logging

import uvicorn

from services.common.errors import SluiceError
from services.common.logs import configure_logging
from services.orchestrator.app import create_app
from services.orchestrator.settings import OrchestratorSettings


def main() -> None:
    settings = OrchestratorSettings()
    configure_logging("orchestrator", settings.log)
    try:
        app = create_app(settings)
    except SluiceError as exc:
        logging.getLogger("services.orchestrator").critical("cannot start: %s", exc.full_message)
        raise SystemExit(2) from None
    # Single worker: the scheduler and the run executor live in this process.
    uvicorn.run(
        app,
        host=settings.http.host,
        port=settings.http.port,
        log_config=None,
        timeout_graceful_shutdown=30,
    )


if __name__ == "__main__":
    main()
