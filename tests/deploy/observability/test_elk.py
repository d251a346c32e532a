"""ELK wiring: the Filebeat config decodes our ECS JSON lines and only uses the environment the
chart's DaemonSet sets; the Kibana saved objects parse and hang together."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from tests.deploy.observability.kql import compile_kql, fields
from tests.deploy.observability.prom import FILES, ROOT

FILEBEAT = FILES / "filebeat" / "filebeat.yml"
SAVED_OBJECTS = FILES / "kibana" / "sluice-saved-searches.ndjson"
DAEMONSET = ROOT / "helm" / "sluice" / "templates" / "filebeat" / "filebeat.yaml"


def saved_objects() -> list[dict[str, Any]]:
    return [json.loads(line) for line in SAVED_OBJECTS.read_text().splitlines() if line.strip()]


def searches() -> dict[str, dict[str, Any]]:
    return {o["attributes"]["title"]: o for o in saved_objects() if o["type"] == "search"}


def search_source(obj: dict[str, Any]) -> dict[str, Any]:
    source: dict[str, Any] = json.loads(
        obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"]
    )
    return source


def test_filebeat_decodes_ecs_json_at_the_root() -> None:
    config = yaml.safe_load(FILEBEAT.read_text())
    (stream,) = config["filebeat.inputs"]
    assert stream["type"] == "filestream" and stream["id"]
    parsers = stream["parsers"]
    assert list(parsers[0]) == ["container"], "the runtime's framing must be removed first"
    ndjson = parsers[1]["ndjson"]
    assert ndjson["target"] == ""
    assert ndjson["overwrite_keys"] is True
    assert ndjson["expand_keys"] is True  # "log.level" next to "log": {...}
    assert ndjson["add_error_key"] is True
    processors = [next(iter(p)) for p in stream["processors"]]
    assert processors[0] == "add_kubernetes_metadata"
    assert "drop_event" in processors
    appended = {f["name"]: f["type"] for f in config["setup.template.append_fields"]}
    assert appended["sluice.rows.rejected"] == "long"
    assert config["output.elasticsearch"]["hosts"] == ["${ELASTICSEARCH_HOSTS}"]


def test_filebeat_only_uses_variables_the_daemonset_sets() -> None:
    used = set(re.findall(r"\$\{([A-Z_]+)(?::[^}]*)?\}", FILEBEAT.read_text()))
    optional = set(re.findall(r"\$\{([A-Z_]+):[^}]*\}", FILEBEAT.read_text()))
    provided = set(re.findall(r"- name: ([A-Z_]+)", DAEMONSET.read_text()))
    assert used - optional <= provided, f"not set by the DaemonSet: {used - optional - provided}"


def test_saved_objects_parse_and_reference_each_other() -> None:
    objects = saved_objects()
    ids = [(o["type"], o["id"]) for o in objects]
    assert len(ids) == len(set(ids))
    patterns = {o["id"]: o for o in objects if o["type"] == "index-pattern"}
    assert patterns, "no data view"
    for pattern in patterns.values():
        assert pattern["attributes"]["timeFieldName"] == "@timestamp"
    assert set(searches()) == {
        "Sluice: failed runs",
        "Sluice: rejected rows by pipeline",
        "Sluice: one run across services",
    }
    for obj in searches().values():
        source = search_source(obj)
        refs = {r["name"]: r for r in obj["references"]}
        ref = refs[source["indexRefName"]]
        assert ref["type"] == "index-pattern" and ref["id"] in patterns
        assert source["query"]["language"] == "kuery"
        compile_kql(source["query"]["query"])  # parses
        assert obj["attributes"]["columns"]
        assert fields(source["query"]["query"])


def test_the_kql_evaluator_itself() -> None:
    doc = {"message": "run failed", "labels.run_id": "r1", "sluice.rows.rejected": 3}
    assert compile_kql('labels.run_id : * and message : "run failed"')(doc)
    assert not compile_kql('labels.run_id : "r2"')(doc)
    assert compile_kql("sluice.rows.rejected > 0 and not error.message : *")(doc)
    assert not compile_kql("sluice.rows.rejected > 3")(doc)
    assert compile_kql('message : ("nothing" or "RUN")')(doc)
