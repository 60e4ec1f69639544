"""A real HTTP server around the fake engine, for fast tests of the load generator."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from engine.fake import FakeEngine
from gateway.app import create_app
from tests.bench.stub_processes import REPLICA_KEY, UPSTREAM_KEY, stub
from tests.conftest import MODEL, fake_state, free_port


@pytest.fixture
def fake_gateway_url() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of the gateway app serving a fake engine (40 tokens)."""
    engine = FakeEngine(model_name=MODEL, reply="abcd" * 10, token_delay_s=0.001)
    app = create_app(fake_state(engine), manage_engines=False)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("fake gateway did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def replica_url() -> Iterator[str]:
    with stub("vllm_replica", "--api-key", REPLICA_KEY) as url:
        yield url


@pytest.fixture(scope="module")
def upstream_url() -> Iterator[str]:
    with stub("openai_upstream", "--api-key", UPSTREAM_KEY) as url:
        yield url
