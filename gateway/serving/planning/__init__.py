"""From a validated OpenAI body to a ``GenerationPlan``: prompt token ids, sampling, and how
the answer is read back (tool calls, usage in streams). Everything a client can get wrong
that pydantic cannot see is refused here with a 4xx naming the parameter."""
