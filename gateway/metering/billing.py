"""What a finished request is billed: the tokens the engine counted for it.

vLLM counts a request's prompt when its prefill completes (the step that samples the
first token) and every token it samples up to the abort; tokens of an aborted request
still in flight are delivered with its final output, which ``RequestRun`` drains. So:

- the prompt is billed once the engine produced at least one token, never before
  (a request aborted or failed before its first token is billed nothing);
- every completion token the engine produced is billed, delivered to the client or not;
- with ``n > 1`` the prompt is billed once (vLLM counts it once per choice);
- cached prompt tokens are billed at the cached price;
- an embedding generates nothing: the prompt tokens of the inputs it pooled are billed.
"""

from __future__ import annotations

from gateway.serving.accounting import Outcome
from gateway.serving.tally import Usage

NOTHING = Usage(0, 0, 0)


def billable_usage(outcome: Outcome) -> Usage:
    usage = outcome.usage
    return usage if usage.completion_tokens > 0 or outcome.prompt_only else NOTHING
