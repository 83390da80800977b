"""The OpenAI SDK against AirGate's policies: JWT as the api_key, rate limits, the content guard.

The SDK must raise its own exception classes (AuthenticationError, RateLimitError,
PermissionDeniedError) and see finish_reason == "content_filter" when a streamed answer is cut.
"""

import time
from pathlib import Path

import jwt
import openai
import pytest

from conftest import MODEL, backend

SECRET = "an-hmac-secret-of-at-least-32-bytes!!"
ISSUER = "https://auth.pytest"
AUDIENCE = "airgate"


def make_token(sub: str, **extra) -> str:
    now = int(time.time())
    claims = {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now - 5, "exp": now + 600, **extra}
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "secrets" / "pytest-jwt"
    folder.mkdir(parents=True)
    (folder / "secret").write_text(SECRET)
    return tmp_path / "secrets"


AUTH = {"authentication": {"jwt": {"secretName": "pytest-jwt", "issuer": ISSUER, "audience": AUDIENCE}}}


def client(gw, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=api_key, max_retries=0, timeout=30.0)


def ask(c: openai.OpenAI, content: str = "Say hello"):
    return c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}])


def test_a_jwt_as_api_key_works_and_a_bad_one_raises_authentication_error(launcher, secrets_dir):
    mock = launcher.mock("auth-a")
    gw = launcher.gateway(
        [backend("auth-a", mock.url, [MODEL])],
        extra_spec=AUTH,
        extra_args=["--secrets-dir", str(secrets_dir)],
    )
    answer = ask(client(gw, make_token("alice")))
    assert answer.choices[0].message.content
    with pytest.raises(openai.AuthenticationError) as raised:
        ask(client(gw, "not-a-jwt"))
    assert raised.value.status_code == 401
    forged = jwt.encode({"sub": "eve", "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 600}, "x" * 40, algorithm="HS256")
    with pytest.raises(openai.AuthenticationError):
        ask(client(gw, forged))
    assert gw.metric("airgate_auth_failures_total") == 2


def test_per_user_limit_raises_rate_limit_error_for_that_user_only(launcher, secrets_dir):
    mock = launcher.mock("rl-a")
    gw = launcher.gateway(
        [backend("rl-a", mock.url, [MODEL])],
        extra_spec={**AUTH, "rateLimit": {"perUser": {"limit": 2, "period": "1m"}}},
        extra_args=["--secrets-dir", str(secrets_dir)],
    )
    alice = client(gw, make_token("alice"))
    ask(alice)
    raw = alice.chat.completions.with_raw_response.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-ratelimit-remaining"] == "0"
    with pytest.raises(openai.RateLimitError) as raised:
        ask(alice)
    assert raised.value.status_code == 429
    assert int(raised.value.response.headers["retry-after"]) >= 1
    ask(client(gw, make_token("bob")))


GUARD = {
    "contentGuard": {
        "enabled": True,
        "scanPrompts": True,
        "scanResponses": True,
        "blockPatterns": [
            {"name": "codenames", "regex": "(?i)secret-agent", "action": "block", "auditLevel": "high"},
        ],
    }
}


def test_a_forbidden_prompt_raises_permission_denied_with_the_policy_code(launcher):
    mock = launcher.mock("guard-a")
    gw = launcher.gateway([backend("guard-a", mock.url, [MODEL])], extra_spec=GUARD)
    with pytest.raises(openai.PermissionDeniedError) as raised:
        ask(client(gw, "unused"), "Tell me about the SECRET-AGENT")
    assert raised.value.status_code == 403
    assert raised.value.code == "content_policy_violation"
    assert "secret-agent" not in str(raised.value).lower()


def test_a_streamed_answer_with_a_forbidden_word_ends_with_content_filter(launcher):
    # The mock's answers read "Mock answer from <name>: ...", so its name is the forbidden word.
    mock = launcher.mock("secret-agent", inter_token_ms=5)
    gw = launcher.gateway([backend("secret-agent", mock.url, [MODEL])], extra_spec=GUARD)
    stream = client(gw, "unused").chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hello"}], stream=True
    )
    text, finish = "", None
    for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    assert finish == "content_filter"
    assert "secret" not in text.lower()
    assert text.startswith("Mock answer from")


REPO = Path(__file__).resolve().parents[2]
CACHE = {
    "semanticCache": {
        "enabled": True,
        "ttl": "1h",
        "similarityThreshold": 0.80,
        "maxCacheSize": "64MiB",
        "evictionPolicy": "lru",
    }
}


def test_a_cache_hit_replays_as_a_stream_the_sdk_accepts(launcher):
    mock = launcher.mock("cache-a")
    gw = launcher.gateway(
        [backend("cache-a", mock.url, [MODEL])],
        extra_spec=CACHE,
        extra_args=["--model-dir", str(REPO / "models" / "all-MiniLM-L6-v2")],
    )
    c = client(gw, "unused")
    question = [{"role": "user", "content": "How do I reset my VPN password?"}]
    first = c.chat.completions.with_raw_response.create(model=MODEL, messages=question)
    assert first.headers["x-airgate-cache"] == "miss"
    original = first.parse().choices[0].message.content
    # The store runs in the background: poll without storing until the entry is there.
    paraphrase = [{"role": "user", "content": "How can I reset my VPN password?"}]
    deadline = time.time() + 10
    while True:
        probe = c.chat.completions.with_raw_response.create(
            model=MODEL, messages=paraphrase, extra_headers={"cache-control": "no-store"}
        )
        if probe.headers["x-airgate-cache"] == "hit" or time.time() > deadline:
            break
        time.sleep(0.05)
    assert probe.headers["x-airgate-cache"] == "hit"
    stream = c.chat.completions.create(
        model=MODEL, messages=paraphrase, stream=True, stream_options={"include_usage": True}
    )
    text, finish, usage = "", None, None
    for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
        usage = chunk.usage or usage
    assert text == original
    assert finish == "stop"
    assert usage is not None and usage.total_tokens > 0


def test_stream_usage_is_counted_but_not_shown_to_a_client_that_did_not_ask(launcher):
    mock = launcher.mock("usage-a", tokens=9)
    gw = launcher.gateway([backend("usage-a", mock.url, [MODEL])])
    before = gw.metric("airgate_tokens_total", type="completion", estimated="false")
    stream = client(gw, "unused").chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hello"}], stream=True
    )
    chunks = list(stream)
    assert chunks, "no chunks"
    assert all(chunk.usage is None for chunk in chunks), "a usage chunk reached the client"
    assert all(chunk.choices for chunk in chunks), "a choice-less (usage) chunk reached the client"
    deadline = time.time() + 5
    while gw.metric("airgate_tokens_total", type="completion", estimated="false") - before < 9 and time.time() < deadline:
        time.sleep(0.05)
    assert gw.metric("airgate_tokens_total", type="completion", estimated="false") - before == 9
