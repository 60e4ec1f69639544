"""The fake-engine gateway served as ``llm-gateway serve`` serves (``run_gateway``:
the guarded HTTP protocol, the connection limit, the probe listener, the draining server), as
a process of its own. No vLLM: the connections are what is under test.

``python -m tests.cli.guarded_gateway --port P --probe-port Q [--parser h11]``; settings come
from the test profile and ``LLMGW_*`` variables (ledger URL, ``LLMGW_SERVER__*``).
``--stock`` serves it as ``serve`` did before the guard (uvicorn's own protocol, every open
connection counted against ``limit_concurrency``): the baseline the guard is measured against.
"""

from __future__ import annotations

import argparse

import uvicorn

from cli.draining import DrainingServer
from cli.gateway_server import CONNECTION_SLACK, run_gateway
from engine.fake import FakeEngine
from gateway.app import create_app
from gateway.settings import load_settings
from tests.conftest import MODEL
from tests.gateway.metered import metered_state


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--probe-port", type=int)
    parser.add_argument("--parser", choices=("auto", "httptools", "h11"), default="auto")
    parser.add_argument("--stock", action="store_true")
    parser.add_argument("--token-delay", type=float, default=0.001)
    args = parser.parse_args()
    settings = load_settings(profile="test")
    state = metered_state(FakeEngine(MODEL, token_delay_s=args.token_delay), settings)
    app = create_app(state, manage_engines=False)
    if not args.stock:
        run_gateway(app, state, settings, "127.0.0.1", args.port, args.probe_port, args.parser)
        return
    config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning",
                            limit_concurrency=settings.limits.max_in_flight + CONNECTION_SLACK)
    DrainingServer(config, state).run()


if __name__ == "__main__":
    main()
