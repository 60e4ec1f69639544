"""vLLM plugin (entry point ``vllm.general_plugins``): no drafter pass when nothing is drafted.

Adaptive speculation (``SpeculationConfig.max_batch_size``) asks vLLM for zero draft
tokens per step while more requests share a step than the limit. vLLM 0.32 still runs
the drafter's first forward pass over every new token then, to keep the drafter's own
KV cache filled, and throws the result away: on a CPU about one extra decoder layer plus
the fused input projection per step, a few percent of the throughput under load, the
very case adaptive speculation exists for.

With ``draft_under_load: skip`` (the default) the proposer returns "no drafts" at once.
The drafter's KV cache then lacks the positions decoded under load; when load falls and
drafting resumes, the drafter attends over those stale slots, so its acceptance can be
lower for requests that lived through the busy spell (measured: barely, 26.7% vs 27.2%
after 48 steps under load; docs/speculation.md). Verification is unchanged, so the output
is exactly the target's either way. ``fill`` keeps vLLM's behaviour.

vLLM loads this plugin in every process it starts (engine core, workers); it acts only
for engines whose ``additional_config`` carries ``{"llm_gateway": {"draft_under_load":
"skip"}}`` (``EngineConfig.engine_args_kwargs`` sets it).
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

PLUGIN_GROUP = "vllm.general_plugins"
PLUGIN_NAME = "llm_gateway"
CONFIG_KEY = "llm_gateway"
SKIP_LOG = "llm-gateway: steps with no drafts skip the drafter pass"
_WRAPPED = "_llm_gateway_skips_idle_drafts"
_LOGGED = "_llm_gateway_logged_skip"
log = logging.getLogger("vllm.llm_gateway")  # under "vllm": printed by vLLM's handler

Propose = Callable[..., Any]


def register() -> None:
    """Wrap the drafters' ``propose`` (idempotent: vLLM calls this once per process)."""
    from vllm.v1.spec_decode.llm_base_proposer import SpecDecodeBaseProposer

    propose = SpecDecodeBaseProposer.propose
    if not getattr(propose, _WRAPPED, False):
        SpecDecodeBaseProposer.propose = skipping_idle_drafts(propose)  # type: ignore[method-assign]


def skips_idle_drafts(additional_config: object) -> bool:
    """Whether an engine's vLLM ``additional_config`` asks to skip the pass at k=0."""
    if not isinstance(additional_config, dict):
        return False
    ours = additional_config.get(CONFIG_KEY)
    return isinstance(ours, dict) and ours.get("draft_under_load") == "skip"


def skipping_idle_drafts(propose: Propose) -> Propose:
    """``propose`` that returns an empty (batch, 0) draft without a forward pass at k=0."""

    signature = inspect.signature(propose)

    @functools.wraps(propose)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not skips_idle_drafts(self.vllm_config.additional_config):
            return propose(self, *args, **kwargs)
        call = signature.bind(self, *args, **kwargs).arguments
        if call["num_speculative_tokens"] != 0:
            return propose(self, *args, **kwargs)
        import torch

        if not getattr(self, _LOGGED, False):
            log.info("%s (draft_under_load: skip)", SKIP_LOG)
            setattr(self, _LOGGED, True)
        self.num_speculative_tokens = 0
        self._last_draft_probs = None
        batch = call["common_attn_metadata"].batch_size()
        device = call["target_token_ids"].device
        return torch.empty(batch, 0, device=device, dtype=torch.int64)

    setattr(wrapper, _WRAPPED, True)
    return wrapper


def problem() -> str | None:
    """Why vLLM would not load this plugin here (None when it will)."""
    names = {ep.name for ep in entry_points(group=PLUGIN_GROUP)}
    if PLUGIN_NAME not in names:
        return (f"the {PLUGIN_GROUP} entry point {PLUGIN_NAME!r} is not installed "
                "(reinstall llm-gateway: `pip install -e .`)")
    allowed = os.environ.get("VLLM_PLUGINS")
    if allowed is not None and PLUGIN_NAME not in allowed.split(","):
        return f"VLLM_PLUGINS={allowed!r} leaves out {PLUGIN_NAME!r}"
    return None
