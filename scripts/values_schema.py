"""Generate helm/sluice/values.schema.json and the values table of helm/sluice/README.md
from helm/sluice/values.yaml.

Every mapping in values.yaml becomes a closed object (``additionalProperties: false``) so a
misspelt key fails ``helm install``; a few keys hold Kubernetes objects or lists passed through
unchanged (resources, annotations, tolerations, ...) and stay open. Types come from the default
values, with enums, ranges and patterns for the keys listed below. ``make manifests`` runs this
(through scripts/render_manifests.py); tests/deploy/platform checks the schema is current.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "sluice"

# Kubernetes objects passed through unchanged (validated later by the Kubernetes schemas).
OPEN_OBJECTS = {
    "podSecurityContext",
    "containerSecurityContext",
    "resources",
    "behavior",
    "affinity",
}
STRING_MAPS = {"annotations", "podAnnotations", "nodeSelector", "labels", "files"}
OBJECT_LISTS = {
    "extraVolumes",
    "extraVolumeMounts",
    "metrics",
    "tolerations",
    "topologySpreadConstraints",
    "extraEgress",
    "env",
    "tls",
    "to",
    "orchestratorFrom",
    "metricsFrom",
}
STRING_LISTS = {"imagePullSecrets"}
ENUMS = {
    "logLevel": ["DEBUG", "INFO", "WARNING", "ERROR"],
    "logFormat": ["json", "console"],
    "pullPolicy": ["Always", "IfNotPresent", "Never"],
    "runner": ["local", "kubernetes"],
    "type": ["ClusterIP", "NodePort", "LoadBalancer"],
}
PORTS = {"port", "metricsPort", "smtpPort"}
AT_LEAST_ONE = {"replicas", "maxReplicas", "maxUnitsInFlight", "maxActiveRuns", "minReplicas"}
PATTERNS = {
    "tag": "^([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$",
    "digest": "^(sha256:[0-9a-f]{64})?$",
    "interval": "^[0-9]+(ms|s|m|h)$",
    "scrapeTimeout": "^[0-9]+(ms|s|m|h)$",
    "tmpSizeLimit": "^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$",
}
NON_EMPTY = {("orchestrator", "state", "existingSecret")}


def schema_of(key: str, value: Any, path: tuple[str, ...]) -> dict[str, Any]:
    """The JSON schema of one values key, from its default value and the tables above."""
    if key in OPEN_OBJECTS:
        return {"type": "object"}
    if key in STRING_MAPS:
        return {"type": "object", "additionalProperties": {"type": "string"}}
    if key in OBJECT_LISTS and isinstance(value, list):
        return {"type": "array", "items": {"type": "object"}}
    if key in STRING_LISTS:
        return {"type": "array", "items": {"type": "string"}}
    if isinstance(value, dict):
        return {
            "type": "object",
            "additionalProperties": False,
            "properties": {k: schema_of(k, v, (*path, k)) for k, v in value.items()},
        }
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, list):  # lists of TCP ports
        return {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 65535}}
    if key == "drainSeconds":
        return {"type": "number", "minimum": 0}
    if isinstance(value, int):
        if key in PORTS:
            return {"type": "integer", "minimum": 1, "maximum": 65535}
        bounds: dict[str, Any] = {"minimum": 1 if key in AT_LEAST_ONE else 0}
        if key == "targetCPUUtilizationPercentage":
            bounds["maximum"] = 100
        return {"type": "integer", **bounds}
    if key in ENUMS:
        return {"type": "string", "enum": ENUMS[key]}
    result: dict[str, Any] = {"type": "string"}
    if key in PATTERNS:
        result["pattern"] = PATTERNS[key]
    if path in NON_EMPTY:
        result["minLength"] = 1
    return result


def values_schema() -> str:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = {
        "$schema": "https://json-schema.org/draft-07/schema#",
        "title": "Values of the Sluice chart",
        **schema_of("", values, ()),
    }
    return json.dumps(schema, indent=2) + "\n"


README_HEAD = """# Sluice Helm chart

Deploys the four Sluice services: extractor, transformer and loader (gRPC, headless Services,
HPAs) and the orchestrator (HTTP API, run page, scheduler). Step-by-step installation on GKE,
Workload Identity, the state database, upgrades and rollbacks: the repository README, section
"Deploy to GKE".

```bash
kubectl -n sluice create secret generic sluice-state --from-literal=url='postgresql+psycopg://...'
kubectl -n sluice create secret generic sluice-auth --from-file=tokens=tokens
helm upgrade --install sluice helm/sluice -n sluice --set global.image.tag=0.1.0
```

`values.schema.json` rejects unknown keys. This file and the schema are generated from the `# --`
comments of `values.yaml` by `make manifests`; edit `values.yaml`, not this table.

## Values

| Key | Type | Default | Description |
| --- | --- | --- | --- |
"""


def documented_keys() -> list[tuple[str, str]]:
    """(dotted key, description) of every key with a `# --` comment, in file order."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str]] = []
    comment: list[str] = []
    found: list[tuple[str, str]] = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("# --"):
            comment = [stripped[4:].strip()]
            continue
        if stripped.startswith("#") and comment:
            comment.append(stripped[1:].strip())
            continue
        match = re.match(r"^( *)([A-Za-z][\w.-]*):", line)
        if not match:
            comment = []
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group(2)))
        if comment:
            found.append((".".join(k for _, k in stack), " ".join(comment)))
        comment = []
    return found


def values_readme() -> str:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    rows = []
    for key, description in documented_keys():
        value: Any = values
        for part in key.split("."):
            value = value[part]
        free_form = key.split(".")[-1] in OPEN_OBJECTS | STRING_MAPS
        if isinstance(value, dict) and value and not free_form:
            continue  # a section: its keys have their own rows
        kind = {
            bool: "bool",
            int: "int",
            float: "float",
            str: "string",
            list: "list",
            dict: "object",
        }
        default = json.dumps(value, separators=(", ", ": "))
        cell = description.replace("|", "\\|")
        rows.append(f"| `{key}` | {kind[type(value)]} | `{default}` | {cell} |")
    return README_HEAD + "\n".join(rows) + "\n"


def main(argv: list[str]) -> int:
    outputs = {
        CHART / "values.schema.json": values_schema(),
        CHART / "README.md": values_readme(),
    }
    if "--check" in argv:
        stale = [p.name for p, text in outputs.items() if not p.exists() or p.read_text() != text]
        if stale:
            print(f"helm/sluice {', '.join(stale)} stale; run `make manifests`")
            return 1
        return 0
    for path, text in outputs.items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
