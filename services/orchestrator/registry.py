"""The pipelines the orchestrator knows, loaded from the pipelines directory."""

from __future__ import annotations

import logging
from pathlib import Path

from services.common.errors import SpecError
from services.common.spec.loading import load_pipeline_dir
from services.common.spec.model import Pipeline
from services.orchestrator import metrics
from services.orchestrator.errors import PipelineNotFound

log = logging.getLogger(__name__)


class PipelineRegistry:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.pipelines: dict[str, Pipeline] = {}
        self.errors: dict[str, SpecError] = {}

    def reload(self) -> None:
        """Re-read every file; invalid files are reported, valid ones stay usable."""
        if not self.directory.is_dir():
            log.warning("pipelines directory %s does not exist", self.directory)
            self.pipelines, self.errors = {}, {}
        else:
            self.pipelines, self.errors = load_pipeline_dir(self.directory)
        for path, error in self.errors.items():
            log.error("invalid pipeline file %s: %s", path, error.message)
        metrics.PIPELINE_ERRORS.set(len(self.errors))
        metrics.export_schedules(self.pipelines.values())
        log.info("loaded %d pipelines from %s", len(self.pipelines), self.directory)

    def get(self, name: str) -> Pipeline:
        try:
            return self.pipelines[name]
        except KeyError:
            known = ", ".join(sorted(self.pipelines)) or "none"
            raise PipelineNotFound(f"no pipeline named {name!r} (known: {known})") from None
