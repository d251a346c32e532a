"""The pipelines the orchestrator knows, loaded from the pipelines directory."""

from __future__ import annotations

import logging
from pathlib import Path

from services.common.errors import SpecError
from services.common.spec.loading import load_pipeline_dir, pipeline_files
from services.common.spec.model import Pipeline
from services.orchestrator import metrics
from services.orchestrator.errors import PipelineNotFound

log = logging.getLogger(__name__)


class PipelineRegistry:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.pipelines: dict[str, Pipeline] = {}
        self.errors: dict[str, SpecError] = {}
        self._seen: tuple[tuple[str, int, int], ...] | None = None

    def _files_state(self) -> tuple[tuple[str, int, int], ...]:
        # stat() follows symlinks, so a ConfigMap update (an atomic symlink swap) is seen too.
        if not self.directory.is_dir():
            return ()
        state = []
        for path in pipeline_files(self.directory):
            try:
                info = path.stat()
            except OSError:
                continue
            state.append((path.name, info.st_mtime_ns, info.st_size))
        return tuple(state)

    def reload_if_changed(self) -> bool:
        """Reload when a file was added, removed or changed since the last load."""
        if self._files_state() == self._seen:
            return False
        self.reload()
        return True

    def reload(self) -> None:
        """Re-read every file; invalid files are reported, valid ones stay usable."""
        self._seen = self._files_state()
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
