"""The gateway's own cost at GPU token rates (issue #34), against token-rate stubs.

``python -m bench.gateway_overhead`` (or ``llm-gateway bench --sections gateway-overhead``)
starts the stubs (bench/stubs), the gateway in its production configuration and LiteLLM's
proxy, each pinned to its own core, and drives each with the same load generator; see
``__main__`` for the arms, workloads and what is reported.
"""
