// Validates the Prometheus Operator resources (ServiceMonitor) of rendered manifests against the
// schemas @kubernetes-models/prometheus-operator generates from the operator's Go types; the
// Kubernetes JSON schemas of kubernetes-validate do not cover CRDs.
// Usage: node crds.mjs NODE_MODULES_DIR FILE.yaml...  (multi-document YAML, read with js-yaml)
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import path from "node:path";

const [modules, ...files] = process.argv.slice(2);
const require = createRequire(path.join(modules, "x.js"));
const yaml = require("js-yaml");
// The package is ESM with an exports map that hides these files from require.resolve.
const pkg = (p) => import(pathToFileURL(path.join(modules, "@kubernetes-models/prometheus-operator", p)).href);
const { ServiceMonitor } = await pkg("monitoring.coreos.com/v1/ServiceMonitor.js");
const { PodMonitor } = await pkg("monitoring.coreos.com/v1/PodMonitor.js");
const models = { "monitoring.coreos.com/v1 ServiceMonitor": ServiceMonitor, "monitoring.coreos.com/v1 PodMonitor": PodMonitor };

// The generated validators check types and required fields but let unknown fields through, so
// field names are checked separately against the package's TypeScript declarations (one
// interface per .d.ts file): a misspelt field is an error, as with kubectl's strict field
// validation. Types from outside the package (ObjectMeta, SecretKeySelector) are not descended.
const declDir = path.join(modules, "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1");
const decls = new Map();
function decl(file) {
  if (decls.has(file)) return decls.get(file);
  const text = readFileSync(path.join(declDir, file), "utf8");
  const imports = new Map();
  for (const m of text.matchAll(/^import \{ (\w+) \} from "\.\/(\w+)\.js";$/gm)) imports.set(m[1], `${m[2]}.d.ts`);
  const head = text.match(/^export interface \w+(?: extends ([\w, ]+))? \{$/m);
  const body = text.slice(head.index, text.indexOf("\n}", head.index));
  const props = new Map([...body.matchAll(/^ {4}"(\w+)"\??: (.+);$/gm)].map((m) => [m[1], m[2]]));
  for (const parent of (head[1] ?? "").split(",").map((s) => s.trim()).filter(Boolean)) {
    if (parent === "TypeMeta") ["apiVersion", "kind"].forEach((k) => props.set(k, "string"));
    else if (imports.has(parent)) for (const [k, v] of decl(imports.get(parent)).props) props.set(k, v);
  }
  const d = { props, imports };
  decls.set(file, d);
  return d;
}
function unknownFields(value, file, where, out = []) {
  if (!value || typeof value !== "object" || Array.isArray(value)) return out;
  const { props, imports } = decl(file);
  for (const [k, v] of Object.entries(value)) {
    const type = props.get(k);
    if (type === undefined) { out.push(`${where}.${k}`); continue; }
    const array = type.match(/^Array<(\w+)>$/);
    const local = imports.get(array ? array[1] : type);
    if (!local) continue;
    if (array && Array.isArray(v)) v.forEach((item, i) => unknownFields(item, local, `${where}.${k}[${i}]`, out));
    else unknownFields(v, local, `${where}.${k}`, out);
  }
  return out;
}

let failed = 0, checked = 0;
for (const file of files) {
  for (const doc of yaml.loadAll(readFileSync(file, "utf8"))) {
    if (!doc || typeof doc !== "object") continue;
    const Model = models[`${doc.apiVersion} ${doc.kind}`];
    if (!Model) {
      if (String(doc.apiVersion).startsWith("monitoring.coreos.com/")) {
        console.error(`ERROR ${file}: no schema here for ${doc.apiVersion} ${doc.kind}`);
        failed++;
      }
      continue;
    }
    const name = `${doc.kind}/${doc.metadata?.name}`;
    checked++;
    try {
      new Model(doc).validate();
      const extra = unknownFields(doc, `${doc.kind}.d.ts`, doc.kind);
      if (extra.length) throw new Error(`unknown fields: ${extra.join(", ")}`);
      console.log(`ok    ${file}: ${name}`);
    } catch (e) {
      failed++;
      console.error(`ERROR ${file}: ${name}: ${e.message}`);
    }
  }
}
console.log(`${checked} Prometheus Operator resources checked, ${failed} failed`);
process.exit(failed ? 1 : 0);
