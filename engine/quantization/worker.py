"""The quantization worker: runs inside ``.venv-quant`` (llmcompressor), never in the gateway.

``python -m engine.quantization.worker --model DIR --method M --output DIR`` loads the float32
model, renders the shipped calibration chats with its chat template, runs the recipe with
llmcompressor and writes a compressed-tensors folder that vLLM loads.
Progress goes to stdout as JSON lines (``events``); everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from engine.quantization import calibration
from engine.quantization.events import emit
from engine.quantization.recipes import QuantRecipe, recipe_for

MARKER = "llm-gateway-quant.json"


def _render(tokenizer: Any, chats: list[tuple[str, str]]) -> list[str]:
    """The shipped calibration chats, rendered with the model's own chat template."""
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
            tokenize=False,
        )
        for prompt, answer in chats
    ]


def _modifiers(recipe: QuantRecipe) -> list[Any]:
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier
    from llmcompressor.modifiers.transform import AWQModifier, SmoothQuantModifier

    if recipe.method == "w8a8-int8":
        return [
            SmoothQuantModifier(smoothing_strength=recipe.smoothing_strength),
            GPTQModifier(targets="Linear", scheme="W8A8", ignore=["lm_head"]),
        ]
    weights = {"num_bits": recipe.weight_bits, "type": "int", "symmetric": recipe.symmetric,
               "strategy": "group", "group_size": recipe.group_size}
    return [
        AWQModifier(n_grid=recipe.awq_grid or 20),
        QuantizationModifier(
            config_groups={"group_0": {"targets": ["Linear"], "weights": weights}},
            ignore=["lm_head"],
        ),
    ]


def _patch_for_cpu_and_progress(total_layers: int) -> None:
    """Two narrow patches of llmcompressor 0.14, applied in this process only.

    - Without CUDA there is no pinned memory: AWQ's ``IntermediatesCache.pin_memory``
      fails, so it becomes a no-op (pinning only speeds up host-to-device copies).
    - Report one progress step per finished layer (``sequential_epoch_end``).
    """
    import torch
    from llmcompressor.core import LifecycleCallbacks
    from llmcompressor.pipelines.cache import IntermediatesCache

    if not torch.cuda.is_available():
        IntermediatesCache.pin_memory = lambda self, *a, **k: None
    original = LifecycleCallbacks.sequential_epoch_end.__func__
    done = [0]

    def epoch_end(cls: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(cls, *args, **kwargs)
        done[0] += 1
        emit("calibrating layers", min(done[0], total_layers), total_layers)
        return result

    LifecycleCallbacks.sequential_epoch_end = classmethod(epoch_end)


def _dataset(tokenizer: Any, texts: list[str], max_len: int) -> Any:
    from datasets import Dataset

    enc = tokenizer(texts, truncation=True, max_length=max_len, add_special_tokens=False)
    return Dataset.from_dict({"input_ids": enc["input_ids"],
                              "attention_mask": enc["attention_mask"]})


def _versions() -> dict[str, str]:
    names = ("llmcompressor", "compressed-tensors", "torch", "transformers")
    return {name: version(name) for name in names} | {"python": platform.python_version()}


def quantize(model_dir: Path, recipe: QuantRecipe, output: Path) -> dict[str, Any]:
    import torch
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    torch.manual_seed(recipe.seed)
    emit("loading model", 0, 1)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model: Any = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    texts = _render(tokenizer, calibration.calibration_chats(recipe.calibration_samples))
    _patch_for_cpu_and_progress(model.config.num_hidden_layers + 1)
    emit("calibrating layers", 0, model.config.num_hidden_layers + 1)
    oneshot(model=model, tokenizer=tokenizer, dataset=_dataset(tokenizer, texts,
            recipe.max_seq_length), recipe=_modifiers(recipe),
            num_calibration_samples=len(texts), max_seq_length=recipe.max_seq_length,
            shuffle_calibration_samples=False, pipeline="sequential")
    emit("writing compressed-tensors folder", 0, 1)
    staging = output.with_name(output.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging, save_compressed=True)
    tokenizer.save_pretrained(staging)
    record = {"source_model": str(model_dir), "recipe": recipe.as_dict(),
              "fingerprint": recipe.fingerprint(), "calibration_digest": calibration.digest(texts),
              "versions": _versions(), "seconds": round(time.monotonic() - started, 1)}
    (staging / MARKER).write_text(json.dumps(record, indent=2) + "\n")
    shutil.rmtree(output, ignore_errors=True)
    staging.rename(output)
    emit("done", 1, 1)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True, help="float32 Hugging Face folder")
    parser.add_argument("--method", required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--samples", type=int, default=None, help="calibration chats")
    args = parser.parse_args(argv)
    recipe = recipe_for(args.method)
    if args.samples is not None:
        recipe = recipe.scaled(args.samples)
    record = quantize(args.model, recipe, args.output)
    print(json.dumps({"event": "result", "record": record}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
