"""The environment variables each service understands, read from its pydantic settings class.

Read dynamically (never a hard-coded list) so that settings added to the code are known to the
deploy tests at once.
"""

from __future__ import annotations

import importlib
import types
import typing
from dataclasses import dataclass

from pydantic import BaseModel
from pydantic_settings import BaseSettings

SETTINGS_CLASSES = {
    "extractor": "services.extractor.settings:ExtractorSettings",
    "transformer": "services.transformer.settings:TransformerSettings",
    "loader": "services.loader.settings:LoaderSettings",
    "orchestrator": "services.orchestrator.settings:OrchestratorSettings",
}


@dataclass(frozen=True)
class EnvSetting:
    name: str
    required: bool


def settings_class(service: str) -> type[BaseSettings]:
    module, _, attr = SETTINGS_CLASSES[service].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    assert issubclass(cls, BaseSettings)
    return cls


def _model_in(annotation: object) -> type[BaseModel] | None:
    """The settings section model inside an annotation (``Section``, ``Section | None``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [m for a in typing.get_args(annotation) if (m := _model_in(a))]
        return models[0] if len(models) == 1 else None
    return None


def env_settings(service: str) -> dict[str, EnvSetting]:
    """SLUICE_* name -> setting, for every leaf field of the service's settings class."""
    cls = settings_class(service)
    config = cls.model_config
    prefix = str(config.get("env_prefix", "")).upper()
    delimiter = str(config.get("env_nested_delimiter") or "__")
    out: dict[str, EnvSetting] = {}

    def walk(model: type[BaseModel], path: list[str], required_parent: bool) -> None:
        for name, field in model.model_fields.items():
            key = field.validation_alias if isinstance(field.validation_alias, str) else name
            section = _model_in(field.annotation)
            required = required_parent and field.is_required()
            if section is not None:
                walk(section, [*path, key], required)
                # A whole section may also be given as JSON in one variable.
                env = prefix + delimiter.join([*path, key]).upper()
                out.setdefault(env, EnvSetting(env, False))
            else:
                env = prefix + delimiter.join([*path, key]).upper()
                out[env] = EnvSetting(env, required)

    walk(cls, [], True)
    return out
