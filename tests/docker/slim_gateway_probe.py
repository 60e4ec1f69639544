"""Run as a script: the gateway in remote mode, with torch, vLLM and accelerate unimportable.

What the slim image (docker/Dockerfile.gateway) has: the project without those. Builds the CLI,
the settings, the models (a tokenizer folder, remote replicas) and the app, and asks /ready
and /health, then prints the heavy modules that got imported (none, or it exits 1).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

BLOCKED = ("torch", "vllm", "accelerate", "triton")


async def main(config_dir: Path) -> int:
    for name in BLOCKED:  # None in sys.modules: `import` fails and find_spec says absent
        sys.modules[name] = None  # type: ignore[assignment]
    import httpx

    import cli
    from cli.serve import missing_vllm
    from gateway.app import create_app
    from gateway.bootstrap import build_state, embedded_models
    from gateway.settings import load_settings

    cli.build()
    settings = load_settings(config_dir, "kubernetes")
    assert missing_vllm(settings) is None, missing_vllm(settings)
    state = build_state(settings, embedded_models(settings))
    app = create_app(state, manage_engines=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://g") as client:
        health = (await client.get("/health")).status_code
        ready = (await client.get("/ready")).status_code
    heavy = sorted(m for m, module in sys.modules.items()
                   if module is not None and m.split(".")[0] in BLOCKED)
    print(f"health={health} ready={ready} heavy={heavy}")
    return 0 if health == 200 and ready == 503 and not heavy else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(Path(sys.argv[1]))))
