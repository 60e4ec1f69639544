"""Shared fixtures: a fake-engine app for fast tests, one real gateway per session.

``live_gateway`` runs the real ``llm-gateway serve --profile test`` (vLLM CPU engine,
SmolLM2) in a subprocess once per test session; every engine test shares it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.fake import CharRenderer, FakeEngine
from gateway.app import create_app
from gateway.bootstrap import build_state
from gateway.http.state import GatewayState
from gateway.serving.registry import ModelRegistry, ServedModel
from gateway.settings import Settings, load_settings
from tests.engine_loads import EngineLoads

REPO = Path(__file__).resolve().parent.parent
ADMIN_KEY = "test-admin-key-0123456789"
MODEL = "smollm2-135m-instruct"
STARTUP_TIMEOUT_S = 540  # below pytest's 600 s per test, which counts fixture setup
# A gateway of a test's own that needs only the chat engine: no embedding engine to start.
CHAT_ONLY = {"LLMGW_MODELS__all-minilm-l6-v2__ENABLED": "false"}
ENGINE_LOADS = pytest.StashKey["EngineLoads"]()


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controlling process only
        loads = EngineLoads()
        loads.start()
        config.stash[ENGINE_LOADS] = loads


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    loads = config.stash.get(ENGINE_LOADS, None)
    if loads is not None:
        terminalreporter.write_line(loads.stop())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that need no engine run first, so a failure shows in minutes; then the modules
    that start engines of their own, one after the other, before the shared session gateway
    starts (never more than two engines alive at once); then the tests on that gateway."""
    items.sort(key=_run_order)


def _run_order(item: pytest.Item) -> int:
    if item.get_closest_marker("own_engine"):
        return 1
    uses_engine = item.get_closest_marker("engine") or "live_gateway" in getattr(
        item, "fixturenames", ())
    return 2 if uses_engine else 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class LiveGateway:
    base_url: str
    admin_key: str
    model: str
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str]
    # each model's readiness as /ready answered while the gateway was starting, in order
    startup: list[dict[str, bool]] = field(default_factory=list)

    @property
    def v1(self) -> str:
        return self.base_url + "/v1"

    def admin_headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.admin_key}"}

    def engine_stats(self) -> dict[str, Any]:
        # a loaded 2-core box starves the gateway's process behind busy engines: a slow
        # answer is an answer (callers poll with their own deadlines)
        response = httpx.get(f"{self.base_url}/admin/engines", headers=self.admin_headers(),
                             timeout=30)
        response.raise_for_status()
        stats: dict[str, Any] = response.json()[self.model]
        return stats

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def start_gateway(
    log_path: Path, env_overrides: dict[str, str], profile: str = "test"
) -> LiveGateway:
    """Start ``llm-gateway serve`` and wait until ``/ready`` answers 200.

    The port is free when chosen but may be taken before the server binds it (an engine's
    own sockets pick ports too): then the start is retried on a fresh port."""
    for attempt in range(3):
        try:
            return _start_once(log_path, env_overrides, profile)
        except PortTakenError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


class PortTakenError(RuntimeError):
    pass


def _start_once(log_path: Path, env_overrides: dict[str, str], profile: str) -> LiveGateway:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **env_overrides}
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--profile", profile, "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    gateway = LiveGateway(
        f"http://127.0.0.1:{port}", ADMIN_KEY, MODEL, process, log_path, env_overrides
    )
    try:
        _wait_ready(gateway)
    except BaseException:  # never leave an engine behind, whatever interrupted the wait
        stop_gateway(gateway)
        if "address already in use" in gateway.log_tail(400):
            raise PortTakenError(f"port {port} was taken before the gateway bound it") from None
        raise
    return gateway


def every_model_ready(ready: httpx.Response) -> bool:
    """``/ready`` is 200 once any model serves (the others may still be loading): tests
    start when every model has."""
    return ready.status_code == 200 and all(ready.json().get("models", {}).values())


def _wait_ready(gateway: LiveGateway) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if gateway.process.poll() is not None:
            code = gateway.process.returncode
            raise RuntimeError(f"gateway exited with {code}:\n{gateway.log_tail()}")
        try:
            ready = httpx.get(f"{gateway.base_url}/ready", timeout=5)
            models = ready.json().get("models", {}) if ready.status_code in (200, 503) else {}
            if models and (not gateway.startup or gateway.startup[-1] != models):
                gateway.startup.append(models)
            if every_model_ready(ready):
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(1)
    raise RuntimeError(f"gateway not ready after {STARTUP_TIMEOUT_S} s:\n{gateway.log_tail()}")


def stop_gateway(gateway: LiveGateway) -> None:
    """SIGTERM (graceful drain), then SIGKILL the whole process group (engine included)."""
    if gateway.process.poll() is None:
        gateway.process.terminate()
    try:
        gateway.process.wait(timeout=90)
    except subprocess.TimeoutExpired:
        gateway.process.kill()
        gateway.process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(gateway.process.pid, signal.SIGKILL)  # engine children left behind


def live_gateway_env(tmp: Path) -> dict[str, str]:
    """Environment for the session gateway; extend here when a feature needs settings."""
    # A ledger of its own, so tests can read it (tests/gateway/metering/test_reconciliation.py).
    return {"LLMGW_METERING__DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'ledger.db'}"}


@pytest.fixture(scope="session")
def live_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    tmp = tmp_path_factory.mktemp("live-gateway")
    gateway = start_gateway(tmp / "gateway.log", live_gateway_env(tmp))
    try:
        yield gateway
    finally:
        stop_gateway(gateway)


# ---- fast tests: the real app around a fake engine -------------------------------


def make_settings(**overrides: Any) -> Settings:
    base = load_settings(profile="test")
    # In-process apps plan in threads: no worker processes to start (and leave behind) per
    # test; tests/gateway/serving/offload and the live gateway cover the process pool.
    planning = base.planning.model_copy(update={"executor": "thread"})
    return base.model_copy(update={"planning": planning, **overrides})


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine(model_name=MODEL)


def fake_state(engine: FakeEngine, settings: Settings | None = None) -> GatewayState:
    registry = ModelRegistry([ServedModel(engine.model_name, engine, CharRenderer())])
    return build_state(settings or make_settings(), registry)


@pytest.fixture
async def fake_client(fake_engine: FakeEngine) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(fake_state(fake_engine), manage_engines=False)
    transport = httpx.ASGITransport(app=app)
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://gateway", headers=headers
    ) as client:
        yield client
