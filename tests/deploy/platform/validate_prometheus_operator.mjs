// Validate ServiceMonitor / PrometheusRule objects with @kubernetes-models/prometheus-operator.
// Usage: node validate_prometheus_operator.mjs <node_modules dir> < objects.json
// Prints a JSON list of {kind, name, error} (empty when every object is valid).
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import path from "node:path";

const modules = process.argv[2];
const base = path.join(modules, "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1");
const kinds = {};
for (const kind of ["ServiceMonitor", "PrometheusRule"]) {
  kinds[kind] = (await import(pathToFileURL(path.join(base, `${kind}.js`)).href))[kind];
}
const objects = JSON.parse(readFileSync(0, "utf8"));
const problems = [];
for (const obj of objects) {
  const Model = kinds[obj.kind];
  if (!Model) {
    problems.push({ kind: obj.kind, name: obj.metadata?.name, error: "no model for this kind" });
    continue;
  }
  try {
    new Model(obj).validate();
  } catch (err) {
    problems.push({ kind: obj.kind, name: obj.metadata?.name, error: String(err.message ?? err) });
  }
}
process.stdout.write(JSON.stringify(problems));
