"""Checks the Grafana dashboard and the Prometheus rules against what gatehouse exposes.

- every metric a dashboard query or an alert rule names is one gatehouse registers
  (src/telemetry/metrics.rs), with a suffix its type allows, or Prometheus' own `up`;
- the dashboard is well formed: unique panel ids, panels inside the 24-column grid and not
  overlapping, every `$variable` defined, every query on the `${datasource}` variable;
- the Grafana provisioning points at the directory compose mounts the dashboards in;
- writes every dashboard query (Grafana's variables replaced) as a recording rule to OUT, so
  that `promtool check rules OUT` parses each one as PromQL.

Usage: python3 observability.py REPO_ROOT OUT_RULES_FILE
"""

import json
import re
import sys
from pathlib import Path

import yaml

KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "offset", "bool", "inf", "nan", "atan2",
}
SUFFIXES = {
    "counter": ["_total"],
    "gauge": [""],
    "histogram": ["_bucket", "_sum", "_count"],
}


def exposed_metrics(root: Path) -> set[str]:
    """Metric names gatehouse serves, from the registry module (name constants and types)."""
    src = (root / "src/telemetry/metrics.rs").read_text()
    consts = dict(re.findall(r'pub const (\w+): &str = "(\w+)";', src))
    # Field → type, from the Metrics struct; constant → field, from the registration calls.
    fields = {}
    for name, ty in re.findall(r"^\s+(\w+): (.+),$", src, re.M):
        kind = "histogram" if "Histogram" in ty else "gauge" if "Gauge" in ty else "counter" if "Counter" in ty else None
        if kind:
            fields[name] = kind
    register = (root / "src/telemetry/metrics/register.rs").read_text()
    names = set()
    for const, field in re.findall(r"r\.register\(\s*(\w+),\s*(?:\"[^\"]*\"|\w+),\s*m\.(\w+)\.clone\(\)", register):
        base = consts[const]
        names.update(base + s for s in SUFFIXES[fields[field]])
    if len(names) < 20:
        sys.exit(f"found only {len(names)} metric names in src/telemetry: the parser needs updating")
    return names | {"up"}


def grafana_to_promql(expr: str) -> str:
    for var, value in (("$__rate_interval", "1m"), ("$__interval", "1m"), ("$__range", "1h")):
        expr = expr.replace(var, value)
    return re.sub(r"\$\{?(\w+)\}?", ".*", expr)


def metric_names(expr: str) -> tuple[set[str], list[str]]:
    """Metric names a PromQL expression selects, and the regexes of {__name__=~"..."} selectors."""
    regexes = re.findall(r'__name__=~"([^"]+)"', expr)
    stripped = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    stripped = re.sub(r"\{[^}]*\}", " ", stripped)
    stripped = re.sub(r"\[[^\]]*\]", " ", stripped)
    stripped = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", stripped)
    stripped = re.sub(r"\boffset\s+\w+", " ", stripped)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][\w:]*", stripped):
        word = m.group(0)
        rest = stripped[m.end():].lstrip()
        if rest.startswith("(") or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names, regexes


def check_exprs(where: str, exprs: list[str], exposed: set[str], problems: list[str]) -> None:
    for expr in exprs:
        names, regexes = metric_names(expr)
        for n in sorted(names - exposed):
            problems.append(f"{where}: {n} is not a metric gatehouse exposes (in: {expr.strip()[:90]})")
        for rx in regexes:
            if not any(re.fullmatch(rx, n) for n in exposed):
                problems.append(f"{where}: no gatehouse metric matches __name__=~{rx!r}")


def panels_of(dash: dict) -> list[dict]:
    out = []
    for p in dash.get("panels", []):
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def check_dashboard(path: Path, exposed: set[str], problems: list[str]) -> list[tuple[str, str]]:
    dash = json.loads(path.read_text())
    where = path.name
    for key in ("uid", "title", "panels", "templating", "schemaVersion"):
        if key not in dash:
            problems.append(f"{where}: no {key}")
    variables = {v["name"] for v in dash.get("templating", {}).get("list", [])}
    ids, cells, queries = set(), {}, []
    for p in panels_of(dash):
        title = p.get("title", "?")
        if p.get("id") in ids:
            problems.append(f"{where}: panel id {p.get('id')} used twice")
        ids.add(p.get("id"))
        g = p.get("gridPos", {})
        if not all(isinstance(g.get(k), int) for k in "hwxy"):
            problems.append(f"{where}: panel {title!r} has no complete gridPos")
            continue
        if g["x"] < 0 or g["x"] + g["w"] > 24:
            problems.append(f"{where}: panel {title!r} lies outside the 24-column grid")
        for dx in range(g["w"]):
            for dy in range(g["h"]):
                cell = (g["x"] + dx, g["y"] + dy)
                if cell in cells:
                    problems.append(f"{where}: panels {cells[cell]!r} and {title!r} overlap")
                    break
                cells[cell] = title
            else:
                continue
            break
        if p.get("type") == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"{where}: panel {title!r} does not use the ${{datasource}} variable")
        if not p.get("targets"):
            problems.append(f"{where}: panel {title!r} has no query")
        for t in p.get("targets", []):
            expr = t.get("expr", "")
            for var in re.findall(r"\$\{?(\w+)\}?", expr):
                if not var.startswith("__") and var not in variables:
                    problems.append(f"{where}: panel {title!r} uses ${var}, which is not a dashboard variable")
            queries.append((f"{title} [{t.get('refId')}]", grafana_to_promql(expr)))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v["query"]["query"] if isinstance(v.get("query"), dict) else v.get("query", "")
            m = re.fullmatch(r"label_values\((\w+),\s*\w+\)", q)
            if not m or m.group(1) not in exposed:
                problems.append(f"{where}: variable {v['name']} queries {q!r}, not label_values(<gatehouse metric>, label)")
    check_exprs(where, [q for _, q in queries], exposed, problems)
    return queries


def main() -> None:
    root, out = Path(sys.argv[1]), Path(sys.argv[2])
    deploy = root / "deploy"
    problems: list[str] = []
    exposed = exposed_metrics(root)

    rules = yaml.safe_load((deploy / "prometheus/alerts.yml").read_text())
    alert_exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    check_exprs("prometheus/alerts.yml", alert_exprs, exposed, problems)

    recording = []
    dashboards = sorted((deploy / "grafana/dashboards").glob("*.json"))
    if not dashboards:
        problems.append("grafana/dashboards: no dashboard")
    for path in dashboards:
        for i, (title, expr) in enumerate(check_dashboard(path, exposed, problems)):
            recording.append({"record": f"dashboard:{path.stem}:{i}", "expr": expr})

    compose = yaml.safe_load((deploy / "compose.yaml").read_text())
    mounts = {v.split(":")[1]: v.split(":")[0] for v in compose["services"]["grafana"]["volumes"]}
    prov = yaml.safe_load((deploy / "grafana/provisioning/dashboards/gatehouse.yaml").read_text())
    for provider in prov["providers"]:
        target = provider["options"]["path"]
        if mounts.get(target) != "./grafana/dashboards":
            problems.append(f"grafana provisioning reads {target}, which compose does not mount from ./grafana/dashboards")
    ds = yaml.safe_load((deploy / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    if not any(d.get("type") == "prometheus" for d in ds["datasources"]):
        problems.append("grafana provisioning: no Prometheus datasource")

    out.write_text(yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": recording}]}, sort_keys=False))
    for p in problems:
        print(f"ERROR {p}")
    print(f"{len(exposed)} metric names exposed by gatehouse; {len(alert_exprs)} alert rules and "
          f"{len(recording)} dashboard queries checked; {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
