"""The gateway as the official `openai` Python SDK sees it, against `airgate-mock` backends.

The mock answers deterministically: token i of an answer is "Mock ", "answer ", "from ",
"<name>: ", then words; 16 tokens unless `max_tokens` cuts it shorter (finish_reason "length").
"""

from __future__ import annotations

import base64
import math
import struct
import time

import httpx
import openai
import pytest

from conftest import MODEL, MODEL_B_ONLY, backend, closed_port_url

MESSAGES = [{"role": "user", "content": "Say hello"}]


def prefix(name: str) -> str:
    return f"Mock answer from {name}: "


# --------------------------------------------------------------------------- happy paths


def test_chat_completion(gateway):
    client = gateway.client()
    r = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert r.object == "chat.completion"
    assert r.model == MODEL
    assert len(r.choices) == 1
    choice = r.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content.startswith(prefix("mock-a"))
    assert choice.finish_reason == "stop"
    assert r.usage is not None
    assert r.usage.completion_tokens == 16
    assert r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_completion_max_tokens_cuts_the_answer(gateway):
    r = gateway.client().chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 5
    assert r.choices[0].message.content.startswith(prefix("mock-a"))


def test_chat_completion_stream_with_usage(gateway):
    client = gateway.client()
    full = client.chat.completions.create(model=MODEL, messages=MESSAGES).choices[0].message.content

    stream = client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert len(chunks) >= 3, chunks
    for c in chunks:
        assert c.object == "chat.completion.chunk"
        assert c.model == MODEL
    text = "".join(
        c.choices[0].delta.content or "" for c in chunks if c.choices and c.choices[0].delta
    )
    assert text == full
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == 16
    assert last.usage.total_tokens == last.usage.prompt_tokens + 16
    assert all(c.usage is None for c in chunks[:-1])


def test_legacy_completions(gateway):
    client = gateway.client()
    r = client.completions.create(model=MODEL, prompt="Say hello", max_tokens=8)
    assert r.object == "text_completion"
    assert r.model == MODEL
    assert r.choices[0].text.startswith(prefix("mock-a"))
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 8

    streamed = client.completions.create(model=MODEL, prompt="Say hello", max_tokens=8, stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == r.choices[0].text


def test_embeddings(gateway):
    client = gateway.client()
    r = client.embeddings.create(model=MODEL, input=["alpha", "beta"], encoding_format="float")
    assert r.object == "list"
    assert r.model == MODEL
    assert [d.index for d in r.data] == [0, 1]
    for d in r.data:
        assert len(d.embedding) == 8
        assert math.isclose(math.sqrt(sum(x * x for x in d.embedding)), 1.0, rel_tol=1e-3)
    assert r.data[0].embedding != r.data[1].embedding
    assert r.usage.prompt_tokens > 0

    again = client.embeddings.create(model=MODEL, input="alpha", encoding_format="float")
    assert again.data[0].embedding == pytest.approx(r.data[0].embedding)

    b64 = client.embeddings.create(model=MODEL, input="alpha", encoding_format="base64")
    vec = b64.data[0].embedding
    if isinstance(vec, str):  # the SDK hands base64 through undecoded
        raw = base64.b64decode(vec)
        vec = list(struct.unpack(f"<{len(raw) // 4}f", raw))
    assert vec == pytest.approx(r.data[0].embedding)


def test_models_list(gateway):
    ids = {m.id: m for m in gateway.client().models.list()}
    assert {"auto", MODEL, MODEL_B_ONLY} <= set(ids)
    assert ids["auto"].owned_by == "airgate"
    assert ids[MODEL].owned_by == "mock-a"
    assert ids[MODEL_B_ONLY].owned_by == "mock-b"


def test_model_routing_auto_and_single_backend_model(gateway):
    client = gateway.client()
    raw = client.chat.completions.with_raw_response.create(model=MODEL_B_ONLY, messages=MESSAGES)
    assert raw.headers["x-airgate-backend"] == "mock-b"
    assert raw.parse().choices[0].message.content.startswith(prefix("mock-b"))

    raw = client.chat.completions.with_raw_response.create(model="auto", messages=MESSAGES)
    assert raw.headers["x-airgate-backend"] == "mock-a"
    # `auto` is sent upstream as the backend's first model.
    assert raw.parse().model == MODEL


def test_raw_response_headers(gateway):
    client = gateway.client()
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
    assert raw.status_code == 200
    assert raw.headers["x-airgate-backend"] == "mock-a"
    request_id = raw.headers.get("x-request-id")
    assert request_id and len(request_id) >= 8
    assert raw.parse().choices[0].message.content.startswith(prefix("mock-a"))

    # A sane client request id is kept; streams carry the headers too.
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=MESSAGES,
        stream=True,
        extra_headers={"x-request-id": "pytest-req-42"},
    )
    assert raw.headers["x-request-id"] == "pytest-req-42"
    assert raw.headers["x-airgate-backend"] == "mock-a"
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices).startswith(
        prefix("mock-a")
    )


# --------------------------------------------------------------------------- SDK exceptions


def test_missing_messages_is_bad_request(gateway):
    client = gateway.client()
    # The SDK's `create` needs `messages`, so post the raw body through the SDK's own client.
    with pytest.raises(openai.BadRequestError) as info:
        client.post("/chat/completions", body={"model": MODEL}, cast_to=object)
    e = info.value
    assert e.status_code == 400
    assert e.type == "invalid_request_error"
    assert e.param == "messages"
    assert "messages" in e.message
    assert e.response.headers.get("x-request-id")

    # The same through plain HTTP, with the OpenAI error shape.
    r = httpx.post(f"{gateway.base_url}/chat/completions", json={"model": MODEL}, timeout=10)
    assert r.status_code == 400
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"}


def test_unknown_model_is_not_found(gateway):
    with pytest.raises(openai.NotFoundError) as info:
        gateway.client().chat.completions.create(model="no-such-model", messages=MESSAGES)
    e = info.value
    assert e.status_code == 404
    assert e.code == "model_not_found"
    assert e.param == "model"
    assert "no-such-model" in e.message


def test_all_backends_down_is_503_and_the_sdk_does_not_retry(launcher):
    gw = launcher.gateway(
        [
            backend("dead-1", closed_port_url(), [MODEL], 1),
            backend("dead-2", closed_port_url(), [MODEL], 2),
        ]
    )
    labels = dict(route="chat_completions", model=MODEL, backend="none", status_class="5xx")
    assert gw.metric("airgate_requests_total", **labels) == 0

    client = gw.client(max_retries=2)  # the SDK default: would retry a plain 503 twice
    assert client.max_retries == openai.DEFAULT_MAX_RETRIES == 2
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    elapsed = time.monotonic() - started
    e = info.value
    assert e.status_code == 503
    assert e.response.headers.get("x-should-retry") == "false"
    assert e.code == "no_backend_available"
    assert "dead-1" in e.message and "dead-2" in e.message

    # Exactly one request reached the gateway, and each backend was tried once.
    assert gw.metric("airgate_requests_total", **labels) == 1
    assert gw.metric("airgate_upstream_attempts_total", backend="dead-1") == 1
    assert gw.metric("airgate_upstream_attempts_total", backend="dead-2") == 1
    # A retry would have slept at least 0.375 s first.
    assert elapsed < 5

    # The counter counts each request: one more SDK call without retries is one more.
    with pytest.raises(openai.InternalServerError):
        gw.client(max_retries=0).chat.completions.create(model=MODEL, messages=MESSAGES)
    assert gw.metric("airgate_requests_total", **labels) == 2


def test_upstream_4xx_is_passed_on_without_failover(launcher):
    # vLLM's error shape has an integer `code`; the client gets OpenAI's shape with its status.
    a = launcher.mock("mock-a", fault="status:400:vllm")
    b = launcher.mock("mock-b")
    gw = launcher.gateway(
        [backend("mock-a", a.url, [MODEL], 1), backend("mock-b", b.url, [MODEL], 2)], mocks=[a, b]
    )
    with pytest.raises(openai.BadRequestError) as info:
        gw.client(max_retries=2).chat.completions.create(model=MODEL, messages=MESSAGES)
    e = info.value
    assert e.status_code == 400
    assert "mock-a" in e.message
    assert e.code == "400"
    assert gw.metric("airgate_upstream_attempts_total", backend="mock-a", outcome="client_error") == 1
    assert gw.metric("airgate_upstream_attempts_total", backend="mock-b") == 0


# --------------------------------------------------------------------------- failover and broken streams


def test_failover_to_priority_2_when_priority_1_answers_500(launcher):
    a = launcher.mock("mock-a", fault="status:500")
    b = launcher.mock("mock-b")
    gw = launcher.gateway(
        [backend("mock-a", a.url, [MODEL], 1), backend("mock-b", b.url, [MODEL], 2)], mocks=[a, b]
    )
    client = gw.client()

    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
    assert raw.status_code == 200
    assert raw.headers["x-airgate-backend"] == "mock-b"
    assert raw.parse().choices[0].message.content.startswith(prefix("mock-b"))

    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, stream=True)
    assert raw.headers["x-airgate-backend"] == "mock-b"
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text.startswith(prefix("mock-b"))

    assert gw.metric("airgate_failovers_total", backend="mock-a", reason="server_error") == 2
    assert gw.metric("airgate_upstream_attempts_total", backend="mock-b", outcome="success") == 2


def test_non_stream_answer_cut_mid_body_fails_over(launcher):
    a = launcher.mock("mock-a", fault="die-mid-stream:3")
    b = launcher.mock("mock-b")
    gw = launcher.gateway(
        [backend("mock-a", a.url, [MODEL], 1), backend("mock-b", b.url, [MODEL], 2)], mocks=[a, b]
    )
    raw = gw.client().chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
    assert raw.headers["x-airgate-backend"] == "mock-b"
    assert raw.parse().choices[0].message.content.startswith(prefix("mock-b"))


def test_stream_dying_mid_way_raises_api_error(launcher):
    a = launcher.mock("mock-a", fault="die-mid-stream:3")
    b = launcher.mock("mock-b")
    gw = launcher.gateway(
        [backend("mock-a", a.url, [MODEL], 1), backend("mock-b", b.url, [MODEL], 2)], mocks=[a, b]
    )
    raw = gw.client().chat.completions.with_raw_response.create(
        model=MODEL, messages=MESSAGES, stream=True
    )
    # The first chunk was committed to the client: no failover once streaming started.
    assert raw.headers["x-airgate-backend"] == "mock-a"
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in raw.parse():
            if chunk.choices:
                received.append(chunk.choices[0].delta.content or "")
    assert not isinstance(info.value, openai.APIStatusError)
    text = "".join(received)
    assert prefix("mock-a").startswith(text), text
    body = info.value.body
    assert isinstance(body, dict) and body.get("type") == "server_error"
    assert str(body.get("code", "")).startswith("upstream_")
    assert gw.metric("airgate_stream_terminations_total") == 1


def test_stalled_stream_raises_api_error_after_the_idle_timeout(launcher):
    a = launcher.mock("mock-a", fault="stall-mid-stream:3")
    gw = launcher.gateway(
        [backend("mock-a", a.url, [MODEL], 1)], routing={"streamIdleTimeout": "1s"}, mocks=[a]
    )
    stream = gw.client().chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    started = time.monotonic()
    with pytest.raises(openai.APIError) as info:
        for _ in stream:
            pass
    assert 0.5 < time.monotonic() - started < 10
    assert info.value.body.get("code") == "upstream_stalled"
    assert gw.metric("airgate_stream_terminations_total", reason="stalled") == 1


# --------------------------------------------------------------------------- active health


def test_health_probe_falls_back_to_v1_models(launcher):
    """A backend without /health (like llama.cpp's server) stays up through /v1/models."""
    nohealth = launcher.mock("nohealth", health_route=False)
    probe = {"enabled": True, "interval": "1s", "timeout": "1s"}
    gw = launcher.gateway(
        [
            backend("nohealth", nohealth.url, [MODEL], 1, health=probe),
            backend("dead", closed_port_url(), [MODEL], 2, health=probe),
        ],
        mocks=[nohealth],
    )
    # Every gauge starts at 1; wait until the probes have run (the dead backend drops to 0).
    deadline = time.monotonic() + 10
    while gw.metric("airgate_backend_up", backend="dead") != 0:
        assert time.monotonic() < deadline, gw.metrics()
        time.sleep(0.2)
    time.sleep(1.5)  # at least one more probe round
    assert gw.metric("airgate_backend_up", backend="nohealth") == 1
    raw = gw.client().chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
    assert raw.headers["x-airgate-backend"] == "nohealth"
