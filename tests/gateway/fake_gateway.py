"""A metered gateway around a fake engine, as its own process (multi-process tests).

``python -m tests.gateway.fake_gateway --port P``; settings come from the test profile
and ``LLMGW_*`` variables (ledger URL, Redis URL, instance id).
"""

from __future__ import annotations

import argparse

import uvicorn

from engine.fake import FakeEngine
from gateway.app import create_app
from gateway.settings import load_settings
from tests.conftest import MODEL
from tests.gateway.metered import metered_state


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token-delay", type=float, default=0.01)
    args = parser.parse_args()
    engine = FakeEngine(MODEL, token_delay_s=args.token_delay)
    settings = load_settings(profile="test")
    state = metered_state(engine, settings)
    uvicorn.run(create_app(state, manage_engines=False), host="127.0.0.1", port=args.port,
                log_level="warning",
                forwarded_allow_ips=list(settings.forwarded_allow_ips))  # as serve does


if __name__ == "__main__":
    main()
