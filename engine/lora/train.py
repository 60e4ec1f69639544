"""Train a LoRA adapter (peft) on a prepared Hugging Face model folder, on CPU.

The prompt is rendered with the model's own chat template (the system turn it adds by
default included, as the gateway renders it); the loss counts only the answer's tokens and
the end-of-turn token. The adapter is saved in float16 (peft's ``adapter_config.json`` and
``adapter_model.safetensors``), which vLLM loads as a LoRA module.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.lora.think_data import ThinkExample

ProgressFn = Callable[[int, int, float], None]
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraPlan:
    rank: int = 8
    alpha: int = 16
    steps: int = 120
    batch_size: int = 8
    lr: float = 1e-3
    warmup: int = 10
    seed: int = 0
    threads: int = 2
    target_modules: tuple[str, ...] = TARGET_MODULES

    def __post_init__(self) -> None:
        if self.rank < 1 or self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("rank, steps and batch_size >= 1, lr > 0")


@dataclass(frozen=True)
class TrainReport:
    steps: int
    examples: int
    first_loss: float  # mean of the first 10 steps' losses
    last_loss: float  # mean of the last 10 steps' losses
    wall_s: float
    trainable_parameters: int
    adapter_bytes: int
    plan: dict[str, Any] = field(default_factory=dict)


def _encode(tokenizer: Any, example: ThinkExample) -> tuple[list[int], int]:
    """Token ids of prompt + target + end of turn, and where the target starts."""
    messages = [{"role": "user", "content": example.prompt}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    target_ids = tokenizer(example.target, add_special_tokens=False)["input_ids"]
    return [*prompt_ids, *target_ids, tokenizer.eos_token_id], len(prompt_ids)


def _batch(encoded: Sequence[tuple[list[int], int]], pad_id: int) -> dict[str, Any]:
    import torch

    width = max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    labels = torch.full((len(encoded), width), -100, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, (ids, start) in enumerate(encoded):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, start : len(ids)] = torch.tensor(ids[start:])
        mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": mask}


def _lr_at(plan: LoraPlan, step: int) -> float:
    if step < plan.warmup:
        return plan.lr * (step + 1) / plan.warmup
    return plan.lr * max(0.05, 1 - (step - plan.warmup) / max(1, plan.steps - plan.warmup))


def _peft_model(model_dir: Path, plan: LoraPlan) -> tuple[Any, Any]:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    base = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
    config = LoraConfig(r=plan.rank, lora_alpha=plan.alpha, lora_dropout=0.0, bias="none",
                        target_modules=list(plan.target_modules), task_type="CAUSAL_LM")
    return get_peft_model(base, config), tokenizer


def train_lora(model_dir: Path, examples: Sequence[ThinkExample], out_dir: Path,
               plan: LoraPlan, progress: ProgressFn | None = None) -> TrainReport:
    """Train on ``examples`` and save the adapter into ``out_dir``."""
    import torch

    torch.set_num_threads(plan.threads)
    torch.manual_seed(plan.seed)
    model, tokenizer = _peft_model(model_dir, plan)
    encoded = [_encode(tokenizer, example) for example in examples]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=plan.lr, weight_decay=0.0)
    order = random.Random(plan.seed)
    losses: list[float] = []
    started = time.monotonic()
    model.train()
    for step in range(plan.steps):
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(plan, step)
        loss = model(**_batch(order.sample(encoded, plan.batch_size), tokenizer.pad_token_id)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
        if progress:
            progress(step + 1, plan.steps, losses[-1])
    wall = time.monotonic() - started
    size = save_adapter(model, out_dir)
    report = TrainReport(plan.steps, len(examples), sum(losses[:10]) / len(losses[:10]),
                         sum(losses[-10:]) / len(losses[-10:]), round(wall, 1),
                         sum(p.numel() for p in params), size, asdict(plan))
    (out_dir / "training.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    return report


def save_adapter(model: Any, out_dir: Path) -> int:
    """peft's files, the weights in float16; returns the weights' size in bytes."""
    import torch
    from safetensors.torch import load_file, save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    weights = out_dir / "adapter_model.safetensors"
    tensors = {k: v.to(torch.float16).contiguous() for k, v in load_file(weights).items()}
    save_file(tensors, weights)
    config = json.loads((out_dir / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = None  # a local folder name would mean nothing elsewhere
    (out_dir / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out_dir / "README.md").unlink(missing_ok=True)  # peft's empty model card
    return weights.stat().st_size
