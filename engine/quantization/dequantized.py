"""Quality of a variant's weights themselves: dequantized to float32, in transformers.

transformers loads a compressed-tensors folder and decompresses every layer to float (the
4-bit values times their scales, exactly what a kernel multiplies by), so perplexity and
greedy answers measure the weights ``llm-gateway quantize`` wrote, on any machine, even one
whose vLLM has no kernel for them (4-bit on an AVX2 CPU). It is not vLLM: neither its kernels'
rounding nor whether it can serve the variant is measured here. ``evaluator`` says
``transformers-dequantized`` (``transformers`` for an unquantized folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.quantization.capability import scheme_of
from engine.quantization.quality import perplexity


def evaluate_dequantized(path: Path, text: str, prompts: list[list[int]],
                         max_tokens: int) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quantized = scheme_of(path) != "none"
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
            "dtype": "float32 (dequantized)" if quantized else "float32",
            "evaluator": "transformers-dequantized" if quantized else "transformers"}


def _greedy(model: Any, prompt: list[int], max_tokens: int, eos: int) -> list[int]:
    import torch

    out = model.generate(torch.tensor([prompt]), max_new_tokens=max_tokens, do_sample=False,
                         eos_token_id=eos, pad_token_id=eos)
    tokens: list[int] = [int(t) for t in out[0, len(prompt):]]
    return tokens
