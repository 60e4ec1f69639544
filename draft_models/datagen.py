"""Distillation data: the target's own greedy answers, generated offline with vLLM.

vLLM's continuous batching makes this the cheap part (hundreds of tokens/s on two
cores). Each shard of ``chunk`` prompts is written once as JSONL, so an interrupted run
resumes at the first missing shard. Along with every answer token we keep the target's
top-k log-probabilities: a soft label for the distillation loss at no extra cost.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from draft_models.prompts import Prompt

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class GenerationPlan:
    target_dir: Path
    max_tokens: int = 256
    chunk: int = 128
    top_k: int = 5
    max_num_seqs: int = 64
    kv_cache_gib: int = 2

    def __post_init__(self) -> None:
        if self.max_tokens < 1 or self.chunk < 1 or self.top_k < 0:
            raise ValueError("max_tokens and chunk must be >= 1, top_k >= 0")



@dataclass(frozen=True)
class Sample:
    """One distillation example: prompt ids, the target's answer, its top-k."""

    prompt_ids: tuple[int, ...]
    output_ids: tuple[int, ...]
    top_ids: tuple[tuple[int, ...], ...] = ()
    top_logprobs: tuple[tuple[float, ...], ...] = ()

    def __post_init__(self) -> None:
        if not self.prompt_ids or not self.output_ids:
            raise ValueError("a sample needs prompt and output tokens")
        if self.top_ids and len(self.top_ids) != len(self.output_ids):
            raise ValueError("top_ids must have one row per output token")


def render_prompts(target_dir: Path, prompts: list[Prompt]) -> list[list[int]]:
    """Token ids through the target's chat template, exactly as the gateway renders."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(target_dir))
    rendered = []
    for prompt in prompts:
        ids: Any = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt.text}],
            add_generation_prompt=True, tokenize=True, return_dict=False,
        )
        rendered.append([int(i) for i in ids])
    return rendered


def _sample_from_output(prompt_ids: list[int], completion: Any, top_k: int) -> Sample:
    output_ids = tuple(int(t) for t in completion.token_ids)
    top_ids: list[tuple[int, ...]] = []
    top_lps: list[tuple[float, ...]] = []
    for by_id in completion.logprobs or ():
        ranked = sorted(by_id.items(), key=lambda item: item[1].logprob, reverse=True)[:top_k]
        top_ids.append(tuple(int(tid) for tid, _ in ranked))
        top_lps.append(tuple(float(lp.logprob) for _, lp in ranked))
    return Sample(tuple(prompt_ids), output_ids, tuple(top_ids), tuple(top_lps))


def shard_path(out_dir: Path, index: int) -> Path:
    return out_dir / f"shard-{index:05d}.jsonl"


def _write_shard(path: Path, samples: list[Sample]) -> None:
    partial = path.with_suffix(".partial")
    with partial.open("w") as fh:
        for s in samples:
            fh.write(json.dumps({
                "prompt_ids": s.prompt_ids, "output_ids": s.output_ids,
                "top_ids": s.top_ids, "top_logprobs": s.top_logprobs,
            }) + "\n")
    partial.rename(path)


def read_samples(data_dir: Path) -> Iterator[Sample]:
    for shard in sorted(data_dir.glob("shard-*.jsonl")):
        for line in shard.read_text().splitlines():
            row = json.loads(line)
            yield Sample(
                tuple(row["prompt_ids"]), tuple(row["output_ids"]),
                tuple(tuple(r) for r in row["top_ids"]),
                tuple(tuple(r) for r in row["top_logprobs"]),
            )


def _build_llm(plan: GenerationPlan) -> Any:
    from engine.config import CpuConfig

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.update(CpuConfig(kv_cache_gib=plan.kv_cache_gib).environment())
    from vllm import LLM

    return LLM(
        model=str(plan.target_dir), dtype="float32", enforce_eager=True, seed=0,
        max_num_seqs=plan.max_num_seqs, max_model_len=2048, enable_prefix_caching=True,
    )


class TargetGenerator:
    """Loads the target in vLLM once (lazily) and writes missing shards for each call."""

    def __init__(self, plan: GenerationPlan) -> None:
        self._plan = plan
        self._llm: Any = None

    def run(self, out_dir: Path, prompts: list[Prompt], progress: ProgressFn) -> int:
        """Write every missing shard under ``out_dir``; returns the number of shards."""
        plan = self._plan
        out_dir.mkdir(parents=True, exist_ok=True)
        rendered = render_prompts(plan.target_dir, prompts)
        chunks = [rendered[i:i + plan.chunk] for i in range(0, len(rendered), plan.chunk)]
        todo = [i for i in range(len(chunks)) if not shard_path(out_dir, i).is_file()]
        progress(len(chunks) - len(todo), len(chunks))
        for done, index in enumerate(todo, start=len(chunks) - len(todo) + 1):
            _write_shard(shard_path(out_dir, index), self._answer(chunks[index]))
            progress(done, len(chunks))
        return len(chunks)

    def llm(self) -> Any:
        """The offline engine (started on first use)."""
        if self._llm is None:
            self._llm = _build_llm(self._plan)
        return self._llm

    def close(self) -> None:
        """Stop the engine's processes and free its memory before training starts."""
        llm, self._llm = self._llm, None
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()

    def _answer(self, chunk: list[list[int]]) -> list[Sample]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(
            temperature=0.0, max_tokens=self._plan.max_tokens, detokenize=False,
            logprobs=self._plan.top_k or None,
        )
        batch = [TokensPrompt(prompt_token_ids=ids) for ids in chunk]
        outputs = self.llm().generate(batch, params, use_tqdm=False)
        return [
            _sample_from_output(ids, out.outputs[0], self._plan.top_k)
            for ids, out in zip(chunk, outputs, strict=True)
        ]
