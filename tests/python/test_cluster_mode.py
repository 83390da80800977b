"""Cluster mode end to end with the real OpenAI SDK: `airgate serve --kubernetes` reads its
gateway and JWT Secret from the API-server stand-in (`airgate-fake-kube`, real HTTP), and the
SDK talks to it as to any OpenAI server: a whole answer, a stream with usage, and a token
signed with another key refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from pathlib import Path

import httpx
import openai
import pytest

from conftest import MODEL, Proc, binary, free_port, start_mock, wait_http_ok

KEY = "cluster-mode-hmac-key-of-32-bytes-or-more"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(key: str, claims: dict) -> str:
    """A JWT signed with HS256 (no JWT library needed)."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = hmac.new(key.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}"


def token(key: str = KEY) -> str:
    claims = {"sub": "sdk-user", "iss": "https://issuer.test", "aud": "airgate",
              "exp": int(time.time()) + 600}  # fmt: skip
    return hs256(key, claims)


def manifests(mock_url: str) -> str:
    """The cluster's objects: a default gateway with JWT, and its Secret. JSON is YAML."""
    gateway = {
        "apiVersion": "hub.traefik.io/v1alpha1",
        "kind": "AIGateway",
        "metadata": {"name": "gw", "namespace": "ml-team"},
        "spec": {
            "backends": [{"name": "mock", "url": mock_url, "models": [MODEL], "timeout": "10s",
                          "healthCheck": {"enabled": False}}],  # fmt: skip
            "authentication": {"jwt": {"secretName": "jwt", "issuer": "https://issuer.test",
                                       "audience": "airgate"}},  # fmt: skip
        },
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": "jwt", "namespace": "ml-team"},
        "stringData": {"secret": KEY},
    }
    return "---\n".join(json.dumps(d, indent=2) + "\n" for d in (gateway, secret))


@pytest.fixture
def cluster_gateway(tmp_path: Path):
    mock = start_mock(tmp_path, "cluster", [MODEL])
    (tmp_path / "cluster.yaml").write_text(manifests(mock.url))
    kubeconfig = tmp_path / "kubeconfig"
    kube = Proc(
        "fake-kube",
        [str(binary("airgate-fake-kube")), "--kubeconfig", str(kubeconfig),
         "--manifests", str(tmp_path / "cluster.yaml")],  # fmt: skip
        tmp_path,
    )
    deadline = time.monotonic() + 20
    while not kubeconfig.exists():
        assert kube.alive() and time.monotonic() < deadline, kube.describe()
        time.sleep(0.05)
    port, admin_port = free_port(), free_port()
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "POD_NAME": "pytest"}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    gw = Proc(
        "airgate-cluster",
        [str(binary("airgate")), "serve", "--kubernetes",
         "--secrets-dir", str(tmp_path / "secrets"),
         "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin_port}"],  # fmt: skip
        tmp_path,
        env=env,
    )
    try:
        wait_http_ok(f"http://127.0.0.1:{admin_port}/readyz", gw)
        yield f"http://127.0.0.1:{port}/v1", gw
    finally:
        gw.stop()
        kube.stop()
        mock.proc.stop()


def test_the_sdk_through_a_gateway_read_from_the_cluster(cluster_gateway):
    base_url, _ = cluster_gateway
    client = openai.OpenAI(base_url=base_url, api_key=token(), max_retries=0, timeout=30.0)
    answer = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hello"}]
    )
    assert answer.choices[0].message.content.startswith("Mock answer from cluster: ")

    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Mock answer from cluster: ")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0

    # a token signed with another key: the Secret read from the cluster decides
    forged = openai.OpenAI(
        base_url=base_url, api_key=token("another-key-another-key-another-key!!"), max_retries=0
    )
    with pytest.raises(openai.AuthenticationError):
        forged.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])

    models = httpx.get(f"{base_url}/models", headers={"authorization": f"Bearer {token()}"})
    assert MODEL in [m["id"] for m in models.json()["data"]]
