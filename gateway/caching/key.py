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

from gateway.serving.planning import GenerationPlan

KEY_VERSION = 1  # bump when the recorded format or what a key covers changes


def is_repeatable(plan: GenerationPlan) -> bool:
    return plan.sampling.temperature == 0 or plan.sampling.seed is not None


def response_key(tenant: str, plan: GenerationPlan) -> str:
    material = {
        "v": KEY_VERSION, "tenant": tenant, "model": plan.model, "kind": plan.kind,
        "prompt": list(plan.prompt_token_ids), "sampling": dataclasses.asdict(plan.sampling),
    }
    encoded = json.dumps(material, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()
