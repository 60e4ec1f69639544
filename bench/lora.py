"""What serving LoRA costs the embedded engine, and whether the think adapter thinks.

Two engines one after the other (vLLM offline API, the model's own settings, each in its
own process): LoRA off, then LoRA on (``--enable-lora``, max_loras 2, rank 8). For each:
time to a ready engine, base-model throughput (``--streams`` prompts of ``--tokens``
tokens, greedy, ignore_eos), and with LoRA on the same load on the think adapter plus a
greedy answer to a few prompts, whose ``<think>...</think>`` span is checked.

    python -m bench.lora [--streams 16 --tokens 128 --out bench/results/NAME]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from pathlib import Path
from typing import Any

from engine.lora.shipped import shipped_adapter
from engine.lora.think_data import THINK_END, THINK_START, make_examples
from gateway.settings import load_settings

MODEL = "smollm2-135m-instruct"
ADAPTER = "smollm2-135m-think"
# Held out: prompts from the training families with new seeds, and questions unlike them.
CHECK_PROMPTS = [example.prompt for example in make_examples(6, seed=9999)] + [
    "Why is the sky blue?", "Write one sentence about cats.", "What is 1234 + 4321?"]


def _engine(lora: bool) -> Any:
    import os

    from vllm import LLM

    config = load_settings(profile="test").engine_config(MODEL)
    os.environ.update(config.environment(on_cpu=True))
    kwargs = config.engine_args_kwargs()
    if lora:
        kwargs.update(enable_lora=True, max_loras=2, max_lora_rank=8)
    return LLM(**kwargs)


def _throughput(llm: Any, prompts: list[str], tokens: int, lora: Any) -> float:
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=tokens, temperature=0, ignore_eos=True)
    started = time.monotonic()
    outputs = llm.generate(prompts, params, lora_request=lora, use_tqdm=False)
    generated = sum(len(o.outputs[0].token_ids) for o in outputs)
    return round(generated / (time.monotonic() - started), 1)


def _chat(llm: Any, prompt: str) -> str:
    tokenizer = llm.get_tokenizer()
    return str(tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                             tokenize=False, add_generation_prompt=True))


def _run(lora: bool, streams: int, tokens: int, adapter_dir: str | None, queue: Any) -> None:
    from vllm import SamplingParams
    from vllm.lora.request import LoRARequest

    started = time.monotonic()
    llm = _engine(lora)
    result: dict[str, Any] = {"lora": lora, "start_s": round(time.monotonic() - started, 1)}
    load = [_chat(llm, p) for p in (CHECK_PROMPTS * streams)[:streams]]
    _throughput(llm, load[:2], 8, None)  # warm-up
    result["base_tok_s"] = _throughput(llm, load, tokens, None)
    if lora:
        adapter = LoRARequest(ADAPTER, 1, adapter_dir or str(shipped_adapter(ADAPTER)))
        _throughput(llm, load[:2], 8, adapter)
        result["adapter_tok_s"] = _throughput(llm, load, tokens, adapter)
        greedy = SamplingParams(max_tokens=96, temperature=0)
        outs = llm.generate([_chat(llm, p) for p in CHECK_PROMPTS], greedy,
                            lora_request=adapter, use_tqdm=False)
        result["answers"] = [{"prompt": p, "text": o.outputs[0].text,
                              "think_span": o.outputs[0].text.startswith(THINK_START)
                              and THINK_END in o.outputs[0].text}
                             for p, o in zip(CHECK_PROMPTS, outs, strict=True)]
    queue.put(result)
    llm.llm_engine.engine_core.shutdown()  # else this process waits on the engine at exit


def measure(lora: bool, streams: int, tokens: int,
            adapter_dir: str | None = None) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_run, args=(lora, streams, tokens, adapter_dir, queue))
    process.start()
    result: dict[str, Any] = queue.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.lora", description=__doc__)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--only", choices=["off", "on"], default=None)
    parser.add_argument("--adapter", default=None, help="adapter folder (default: shipped)")
    parser.add_argument("--out", type=Path, default=None, help="write NAME.json")
    args = parser.parse_args()
    runs = [measure(mode == "on", args.streams, args.tokens, args.adapter)
            for mode in ("off", "on") if args.only in (None, mode)]
    text = json.dumps({"streams": args.streams, "tokens": args.tokens, "runs": runs}, indent=2)
    print(text)
    if args.out is not None:
        args.out.with_suffix(".json").write_text(text + "\n")


if __name__ == "__main__":
    main()
