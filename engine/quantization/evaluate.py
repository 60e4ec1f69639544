"""Measure perplexity and greedy answers of models with vLLM's offline API, in one process.

``python -m engine.quantization.evaluate --out FILE NAME=DIR[:DTYPE] ...`` loads each model in
turn (one engine at a time) and writes ``{NAME: {"perplexity": ..., "greedy": [[ids]...]}}``.
The engine runs in-process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) so that one interpreter,
imports paid once, can evaluate several variants: a CI-sized quality gate. A variant this
machine's vLLM cannot serve (4-bit on an AVX2 CPU) is judged on its dequantized weights
instead (``dequantized.py``); ``evaluator`` says which ran.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config import CpuConfig
from engine.quantization import calibration
from engine.quantization.quality import perplexity

GREEDY_TOKENS = 32


@dataclass(frozen=True)
class Target:
    name: str
    path: Path
    dtype: str

    @classmethod
    def parse(cls, spec: str) -> Target:
        name, _, rest = spec.partition("=")
        path, _, dtype = rest.partition(":")
        if not name or not path:
            raise ValueError(f"expected NAME=DIR[:DTYPE], got {spec!r}")
        return cls(name, Path(path), dtype or "float32")


def greedy_prompt_ids(tokenizer: Any) -> list[list[int]]:
    rendered = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                      add_generation_prompt=True)
        for p in calibration.greedy_prompts()
    ]
    return [list(tokenizer.encode(text, add_special_tokens=False)) for text in rendered]


def evaluate(target: Target) -> dict[str, Any]:
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from engine.quantization.capability import (
        detect_hardware,
        scheme_of,
        servable,
        serving_dtype,
    )

    scheme, hardware = scheme_of(target.path), detect_hardware()
    # one of vLLM's dtype literals, checked by vLLM; W8A8 on AMX needs bfloat16
    dtype: Any = serving_dtype(scheme, target.dtype, hardware)
    reason = servable(scheme, dtype, hardware)
    if reason is not None:
        from transformers import AutoTokenizer

        from engine.quantization.dequantized import evaluate_dequantized

        prompts = greedy_prompt_ids(AutoTokenizer.from_pretrained(str(target.path)))
        return evaluate_dequantized(target.path, calibration.heldout_text(), prompts,
                                    GREEDY_TOKENS, reason)
    llm = LLM(model=str(target.path), dtype=dtype, enforce_eager=True, max_model_len=2048,
              seed=0, max_num_seqs=16)
    tokenizer = llm.get_tokenizer()
    text_ids = tokenizer(calibration.heldout_text(), add_special_tokens=False)["input_ids"]
    scored = llm.generate([TokensPrompt(prompt_token_ids=text_ids)],
                          SamplingParams(max_tokens=1, prompt_logprobs=0), use_tqdm=False)
    prompt_logprobs = scored[0].prompt_logprobs or []
    logprobs = [step[tok].logprob for tok, step in zip(text_ids[1:], prompt_logprobs[1:],
                                                        strict=True) if step is not None]
    requests = [TokensPrompt(prompt_token_ids=ids) for ids in greedy_prompt_ids(tokenizer)]
    answers = llm.generate(requests,
                           SamplingParams(temperature=0.0, max_tokens=GREEDY_TOKENS),
                           use_tqdm=False)
    result = {"perplexity": perplexity(logprobs), "scored_tokens": len(logprobs),
              "greedy": [list(a.outputs[0].token_ids) for a in answers],
              "greedy_text": [a.outputs[0].text for a in answers], "dtype": str(dtype),
              "evaluator": "vLLM"}
    del llm
    gc.collect()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("targets", nargs="+", help="NAME=DIR[:DTYPE]")
    args = parser.parse_args(argv)
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.update(CpuConfig(kv_cache_gib=1).environment())  # ignored on CUDA
    results = {t.name: evaluate(t) for t in map(Target.parse, args.targets)}
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
