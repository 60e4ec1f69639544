"""Quality of a variant this machine's vLLM cannot run: its weights, dequantized, in torch.

On an AVX2 CPU vLLM's CPU build has no 4-bit kernel, yet the quality gate must still
judge the weights ``llm-gateway quantize`` wrote. transformers loads a compressed-tensors
folder and decompresses every layer to float (the 4-bit values times their scales, exactly
what the kernel multiplies by), so perplexity and greedy answers measure the quantized
weights themselves; only kernel rounding differs from serving. The result says which
evaluator ran and why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.quantization.quality import perplexity


def evaluate_dequantized(path: Path, text: str, prompts: list[list[int]], max_tokens: int,
                         reason: str) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    model.eval()  # type: ignore[no-untyped-call]
    text_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = model(torch.tensor([text_ids])).logits[0, :-1]
        picked = torch.log_softmax(logits.float(), dim=-1).gather(
            1, torch.tensor(text_ids[1:]).unsqueeze(1))
        logprobs = [float(x) for x in picked.squeeze(1)]
        greedy = [_greedy(model, ids, max_tokens, int(tokenizer.eos_token_id)) for ids in prompts]
    return {"perplexity": perplexity(logprobs), "scored_tokens": len(logprobs),
            "greedy": greedy,
            "greedy_text": [tokenizer.decode(g, skip_special_tokens=True) for g in greedy],
            "dtype": "float32 (dequantized)",
            "evaluator": f"transformers, dequantized weights: {reason}"}


def _greedy(model: Any, prompt: list[int], max_tokens: int, eos: int) -> list[int]:
    import torch

    out = model.generate(torch.tensor([prompt]), max_new_tokens=max_tokens, do_sample=False,
                         eos_token_id=eos, pad_token_id=eos)
    tokens: list[int] = [int(t) for t in out[0, len(prompt):]]
    return tokens
