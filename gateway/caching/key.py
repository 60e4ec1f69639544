"""What makes two requests the same: the cache key of a repeatable request.

A request is repeatable when its output is fixed by its inputs: greedy (temperature 0)
or seeded. The key covers the tenant (one tenant never sees another's answers, nor learns
from timing what another asked), the model, the rendered prompt's token ids and every
sampling parameter. Whether the answer is streamed does not change it, so a streamed
request can be answered from a non-streamed one and back.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from gateway.serving.plan import GenerationPlan

KEY_VERSION = 2  # bump when the recorded format or what a key covers changes


def is_repeatable(plan: GenerationPlan) -> bool:
    """Greedy or seeded, one prompt (several prompts run as several engine requests) and no
    logprobs (a recording would hold every alternative of every token a second time)."""
    if len(plan.prompts) != 1 or plan.sampling.logprobs is not None:
        return False
    return plan.sampling.temperature == 0 or plan.sampling.seed is not None


def response_key(tenant: str, plan: GenerationPlan) -> str:
    """Sampling covers the structured-output constraint; ``tools`` how calls are read."""
    material = {
        "v": KEY_VERSION, "tenant": tenant, "model": plan.model, "kind": plan.kind,
        "prompt": list(plan.prompt_token_ids), "sampling": dataclasses.asdict(plan.sampling),
        "tools": None if plan.tools is None else dataclasses.asdict(plan.tools),
    }
    encoded = json.dumps(material, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()
