"""Measure perplexity and greedy answers of models, in one process: vLLM, or transformers.

``python -m engine.quantization.evaluate --out FILE NAME=DIR[:DTYPE][@EVALUATOR] ...`` loads
each model in turn (one engine at a time) and writes ``{NAME: {"perplexity": ...,
"greedy": [[ids]...], "evaluator": ...}}``. EVALUATOR is ``vllm`` (the default) or
``transformers``:

- ``vllm``: vLLM's offline API, in-process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) so that one
  interpreter, imports paid once, evaluates several variants: a CI-sized quality gate. A
  variant this machine cannot serve (4-bit on an AVX2 CPU) is refused as ``serve`` refuses
  it: the entry holds ``refused`` (the ``UnsupportedQuantizationError`` message) and no
  measurement, never another evaluator's numbers.
- ``transformers``: the weights dequantized to float32 in transformers (``dequantized.py``),
  on any machine; ``evaluator`` is then ``transformers-dequantized`` (``transformers`` for an
  unquantized folder). It judges the weights, not vLLM's kernels.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast, get_args

from engine.config import CpuConfig, Dtype, EngineConfig
from engine.errors import UnsupportedQuantizationError
from engine.quantization import calibration
from engine.quantization.capability import adapt_to_hardware, detect_hardware, require_supported
from engine.quantization.quality import perplexity

GREEDY_TOKENS = 32
Evaluator = Literal["vllm", "transformers"]


@dataclass(frozen=True)
class Target:
    name: str
    path: Path
    dtype: Dtype
    evaluator: Evaluator = "vllm"

    @classmethod
    def parse(cls, spec: str) -> Target:
        name, _, rest = spec.partition("=")
        rest, _, evaluator = rest.partition("@")
        path, _, dtype = rest.partition(":")
        if not name or not path:
            raise ValueError(f"expected NAME=DIR[:DTYPE][@EVALUATOR], got {spec!r}")
        dtype, evaluator = dtype or "float32", evaluator or "vllm"
        if dtype not in get_args(Dtype):
            raise ValueError(f"dtype must be one of {get_args(Dtype)}, got {dtype!r}")
        if evaluator not in get_args(Evaluator):
            raise ValueError(f"evaluator must be one of {get_args(Evaluator)}, got {evaluator!r}")
        return cls(name, Path(path), cast(Dtype, dtype), cast(Evaluator, evaluator))


def greedy_prompt_ids(tokenizer: Any) -> list[list[int]]:
    rendered = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                      add_generation_prompt=True)
        for p in calibration.greedy_prompts()
    ]
    return [list(tokenizer.encode(text, add_special_tokens=False)) for text in rendered]


def evaluate(target: Target) -> dict[str, Any]:
    if target.evaluator == "transformers":
        return _in_transformers(target)
    return _in_vllm(target)


def _in_transformers(target: Target) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from engine.quantization.dequantized import evaluate_dequantized

    prompts = greedy_prompt_ids(AutoTokenizer.from_pretrained(str(target.path)))
    return evaluate_dequantized(target.path, calibration.heldout_text(), prompts, GREEDY_TOKENS)


def _in_vllm(target: Target) -> dict[str, Any]:
    config, hardware = EngineConfig(target.name, target.path, dtype=target.dtype), detect_hardware()
    try:
        require_supported(config, hardware)  # the gate `serve` passes before vLLM starts
    except UnsupportedQuantizationError as exc:
        return {"evaluator": "vllm", "refused": str(exc), "error": type(exc).__name__,
                "dtype": target.dtype}  # no measurement, and no other evaluator's instead
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    # one of vLLM's dtype literals, checked by vLLM; W8A8 on AMX needs bfloat16
    dtype: Any = adapt_to_hardware(config, hardware).dtype
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
              "evaluator": "vllm"}
    del llm
    gc.collect()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("targets", nargs="+", help="NAME=DIR[:DTYPE][@EVALUATOR]")
    args = parser.parse_args(argv)
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.update(CpuConfig(kv_cache_gib=1).environment())  # ignored on CUDA
    results = {t.name: evaluate(t) for t in map(Target.parse, args.targets)}
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
