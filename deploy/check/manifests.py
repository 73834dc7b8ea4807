"""Checks what the Kubernetes schemas cannot: that rendered manifests and the compose file run
gatehouse the way gatehouse needs to be run.

For every pod that runs gatehouse (a container or init container named `gatehouse`):
- service links are off (a Service named gatehouse-... injects GATEHOUSE_* variables, which
  gatehouse reads as configuration and refuses as unknown keys);
- every GATEHOUSE_* variable names a configuration key (the top-level gateway.yaml's tree, plus
  admin.token/token_file and the fleet-mode names of issue 9: store.url, store.url_file, instance);
- the config file it is given comes from a ConfigMap of the render; the key_env of every gateway
  key and the upstream's api_key_env are set; a non-loopback proxy has keys or an explicit mode;
- it runs as a numeric non-root user on a read-only root filesystem without privilege escalation;
- it has startup and liveness probes on /health (and, at the edge, readiness on /ready or /health);
- at the edge, several replicas (or an HPA) come with GATEHOUSE_STORE__URL (shared PostgreSQL).
Across the render: Services, PDBs, HPAs and ServiceMonitors select something that exists, named
ports exist, and non-optional secretKeyRefs name keys of Secrets in the render.

Usage: python3 manifests.py REPO_ROOT [--compose FILE] RENDERED.yaml...  (one render per file)
"""

import sys
from pathlib import Path

import yaml

EXTRA_KEYS = {("admin", "token"), ("admin", "token_file"), ("store", "url"), ("store", "url_file"), ("instance",)}


def config_paths(tree, prefix=()):
    out = set()
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.add(prefix + (str(k),))
            # Maps keyed by names (upstreams, aliases, headers): any child name is fine.
            if prefix + (str(k),) in {("upstreams",), ("models", "aliases")}:
                for child in (v or {}).values():
                    out |= {prefix + (str(k), "*") + p for p in config_paths(child)}
                out.add(prefix + (str(k), "*"))
            else:
                out |= config_paths(v, prefix + (str(k),))
    return out


def env_key_ok(name: str, known: set) -> bool:
    path = tuple(name[len("GATEHOUSE_"):].lower().split("__"))
    if path in EXTRA_KEYS or path in known:
        return True
    # A name under a map keyed by names: upstreams.<any>.base_url.
    return any(path[:i] + ("*",) + path[i + 1:] in known for i in range(len(path)))


def loopback(addr: str) -> bool:
    host = addr.rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


class Checker:
    def __init__(self, root: Path):
        self.known = config_paths(yaml.safe_load((root / "gateway.yaml").read_text()))
        self.problems: list[str] = []
        self.checked = 0

    def err(self, where: str, msg: str):
        self.problems.append(f"{where}: {msg}")

    def env_names(self, where: str, names):
        for n in names:
            if n.startswith("GATEHOUSE_") and not env_key_ok(n, self.known):
                self.err(where, f"{n} is not a gatehouse configuration key: gatehouse would refuse to start")

    def check_config(self, where: str, cfg: dict, env: dict):
        """The effective config: the file, with the env's listen/auth overrides."""
        cfg = cfg or {}
        auth = cfg.get("auth") or {}
        mode = env.get("GATEHOUSE_AUTH__MODE", auth.get("mode", "keys"))
        keys = auth.get("keys") or []
        listen = env.get("GATEHOUSE_PROXY__LISTEN", (cfg.get("proxy") or {}).get("listen", "127.0.0.1:8000"))
        if mode == "keys" and not keys and not loopback(listen):
            self.err(where, f"proxy listens on {listen} with auth.mode keys and no keys: gatehouse refuses to start")
        for k in keys:
            v = k.get("key_env")
            if v and v not in env:
                self.err(where, f"gateway key variable {v} (auth.keys) is not set")
            if v and v.startswith("GATEHOUSE_"):
                self.err(where, f"gateway key variable {v} starts with GATEHOUSE_: read as configuration")
        for name, up in (cfg.get("upstreams") or {}).items():
            var = (up or {}).get("api_key_env", f"{name.upper()}_API_KEY")
            if var not in env and not (up or {}).get("api_key_file") and mode != "passthrough":
                self.err(where, f"upstream {name}'s key variable {var} is not set")
        admin = env.get("GATEHOUSE_ADMIN__LISTEN", (cfg.get("admin") or {}).get("listen", "127.0.0.1:8001"))
        if not loopback(admin) and "GATEHOUSE_ADMIN__TOKEN" not in env and "GATEHOUSE_ADMIN__TOKEN_FILE" not in env \
                and not (cfg.get("admin") or {}).get("token_file"):
            self.err(where, f"admin listens on {admin} without a token: gatehouse refuses to start")
        return listen

    # --- Kubernetes
    def kubernetes(self, files):
        docs = []
        for f in files:
            for d in yaml.safe_load_all(Path(f).read_text()):
                if isinstance(d, dict) and d.get("kind"):
                    d["_file"] = f
                    docs.append(d)
        by_kind = {}
        for d in docs:
            by_kind.setdefault(d["kind"], []).append(d)
        configmaps = {d["metadata"]["name"]: d for d in by_kind.get("ConfigMap", [])}
        secrets = {d["metadata"]["name"]: d for d in by_kind.get("Secret", [])}
        workloads = [d for k in ("Deployment", "StatefulSet", "DaemonSet") for d in by_kind.get(k, [])]
        hpa_targets = {(h["spec"]["scaleTargetRef"]["kind"], h["spec"]["scaleTargetRef"]["name"])
                       for h in by_kind.get("HorizontalPodAutoscaler", [])}

        for h in by_kind.get("HorizontalPodAutoscaler", []):
            ref = h["spec"]["scaleTargetRef"]
            if not any(w["kind"] == ref["kind"] and w["metadata"]["name"] == ref["name"] for w in workloads):
                self.err(f"{h['_file']}: HPA {h['metadata']['name']}", f"targets {ref['kind']}/{ref['name']}, not in the render")

        def pods_matching(selector):
            return [w for w in workloads
                    if selector and all(w["spec"]["template"]["metadata"].get("labels", {}).get(k) == v
                                        for k, v in selector.items())]

        for w in workloads:
            spec = w["spec"]["template"]["spec"]
            where = f"{w['_file']}: {w['kind']} {w['metadata']['name']}"
            sel = w["spec"]["selector"]["matchLabels"]
            labels = w["spec"]["template"]["metadata"].get("labels", {})
            if any(labels.get(k) != v for k, v in sel.items()):
                self.err(where, "selector does not match the pod template's labels")
            for c in spec.get("containers", []) + spec.get("initContainers", []):
                for e in c.get("env", []):
                    ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                    if ref and not ref.get("optional") and ref["name"] in secrets:
                        s = secrets[ref["name"]]
                        if ref["key"] not in {**s.get("data", {}), **s.get("stringData", {})}:
                            self.err(where, f"{c['name']}: Secret {ref['name']} has no key {ref['key']}")
            gh = [c for c in spec.get("containers", []) + spec.get("initContainers", []) if c["name"] == "gatehouse"]
            for c in gh:
                self.checked += 1
                self.gatehouse_container(where, w, spec, c, configmaps, (w["kind"], w["metadata"]["name"]) in hpa_targets)

        for s in by_kind.get("Service", []):
            where = f"{s['_file']}: Service {s['metadata']['name']}"
            pods = pods_matching(s["spec"].get("selector"))
            if not pods:
                self.err(where, "selects no pod of the render")
            for p in s["spec"]["ports"]:
                tp = p.get("targetPort")
                if isinstance(tp, str) and not any(
                        tp == cp.get("name") for w in pods
                        for c in w["spec"]["template"]["spec"].get("containers", []) + w["spec"]["template"]["spec"].get("initContainers", [])
                        for cp in c.get("ports", [])):
                    self.err(where, f"targetPort {tp} is no container port name of the pods it selects")
        for p in by_kind.get("PodDisruptionBudget", []):
            if not pods_matching(p["spec"]["selector"]["matchLabels"]):
                self.err(f"{p['_file']}: PDB {p['metadata']['name']}", "selects no pod of the render")
        for m in by_kind.get("ServiceMonitor", []):
            where = f"{m['_file']}: ServiceMonitor {m['metadata']['name']}"
            sel = m["spec"]["selector"]["matchLabels"]
            svcs = [s for s in by_kind.get("Service", [])
                    if all(s["metadata"].get("labels", {}).get(k) == v for k, v in sel.items())]
            if not svcs:
                self.err(where, "selects no Service of the render")
            for ep in m["spec"]["endpoints"]:
                if not any(ep.get("port") == p.get("name") for s in svcs for p in s["spec"]["ports"]):
                    self.err(where, f"endpoint port {ep.get('port')} is not a port name of the selected Services")
                cred = (ep.get("authorization") or {}).get("credentials")
                if cred and cred["name"] in secrets and cred["key"] not in {**secrets[cred["name"]].get("data", {}), **secrets[cred["name"]].get("stringData", {})}:
                    self.err(where, f"Secret {cred['name']} has no key {cred['key']}")

    def gatehouse_container(self, where, w, spec, c, configmaps, autoscaled):
        where = f"{where} container gatehouse"
        if spec.get("enableServiceLinks") is not False:
            self.err(where, "enableServiceLinks must be false (service-link GATEHOUSE_* variables stop gatehouse)")
        env = {e["name"]: e.get("value", "<from " + ("secret" if "secretKeyRef" in (e.get("valueFrom") or {}) else "elsewhere") + ">")
               for e in c.get("env", [])}
        self.env_names(where, env)
        psc, csc = spec.get("securityContext", {}), c.get("securityContext", {})
        if not (csc.get("runAsNonRoot", psc.get("runAsNonRoot"))):
            self.err(where, "runAsNonRoot is not set")
        if not isinstance(csc.get("runAsUser", psc.get("runAsUser")), int):
            self.err(where, "no numeric runAsUser (the image's user must be verifiable as non-root)")
        if csc.get("readOnlyRootFilesystem") is not True:
            self.err(where, "readOnlyRootFilesystem is not true")
        if csc.get("allowPrivilegeEscalation") is not False:
            self.err(where, "allowPrivilegeEscalation is not false")
        args = c.get("args", [])
        cfg = None
        if "--config" in args:
            path = Path(args[args.index("--config") + 1])
            mount = next((m for m in c.get("volumeMounts", []) if m["mountPath"] == str(path.parent)), None)
            vol = mount and next((v for v in spec.get("volumes", []) if v["name"] == mount["name"]), None)
            cm = vol and (vol.get("configMap") or {}).get("name")
            if mount and mount.get("subPath"):
                self.err(where, "the config is mounted with subPath: edits would never reach the pod")
            if not cm or cm not in configmaps:
                self.err(where, f"--config {path} is not a file of a ConfigMap in the render")
            else:
                text = configmaps[cm].get("data", {}).get(path.name)
                if text is None:
                    self.err(where, f"ConfigMap {cm} has no {path.name}")
                else:
                    cfg = yaml.safe_load(text) or {}
        listen = self.check_config(where, cfg or {}, env)
        edge = not loopback(listen)
        for probe in ("startupProbe", "livenessProbe"):
            if ((c.get(probe) or {}).get("httpGet") or {}).get("path") != "/health":
                self.err(where, f"{probe} is not an HTTP probe of /health")
        if edge and ((c.get("readinessProbe") or {}).get("httpGet") or {}).get("path") not in ("/ready", "/health"):
            self.err(where, "edge gatehouse without a readiness probe on /ready or /health")
        if edge and (w["spec"].get("replicas", 1) > 1 or autoscaled) and "GATEHOUSE_STORE__URL" not in env:
            self.err(where, "several edge replicas without GATEHOUSE_STORE__URL: each would keep its own SQLite store")

    # --- compose
    def compose(self, path: Path):
        doc = yaml.safe_load(path.read_text())
        for name, svc in doc["services"].items():
            if "gatehouse" not in str(svc.get("image", "")) and "build" not in svc:
                continue
            self.checked += 1
            where = f"{path}: service {name}"
            env = svc.get("environment") or {}
            if isinstance(env, list):
                env = dict(e.split("=", 1) for e in env)
            self.env_names(where, env)
            # The image's defaults: 0.0.0.0 listeners and /app/gateway.yaml (the repository's).
            env = {"GATEHOUSE_PROXY__LISTEN": "0.0.0.0:8000", "GATEHOUSE_ADMIN__LISTEN": "0.0.0.0:8001", **env}
            self.check_config(where, {}, env)


def main():
    args = sys.argv[1:]
    root = Path(args.pop(0))
    c = Checker(root)
    if args and args[0] == "--compose":
        args.pop(0)
        c.compose(Path(args.pop(0)))
    # Each file is one deployable render: names are resolved within it.
    for f in args:
        c.kubernetes([f])
    for p in c.problems:
        print(f"ERROR {p}")
    print(f"{c.checked} gatehouse containers and services checked; {len(c.problems)} problems")
    sys.exit(1 if c.problems or not c.checked else 0)


if __name__ == "__main__":
    main()
