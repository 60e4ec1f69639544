"""Regenerate ``data/calibration_chats.jsonl``: shipped prompts answered by the float32 model.

Run once, inside ``.venv-quant``, when the prompts change; the output is committed so that
every quantization calibrates on byte-identical chats (no generation at quantize time):
``python -m engine.quantization.make_calibration --model DIR``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from engine.quantization import calibration

_ANSWER_TOKENS = 128


def answer_all(model_dir: Path, prompts: list[str]) -> list[str]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer: Any = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    model: Any = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    rendered = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
        )
        for p in prompts
    ]
    enc = tokenizer(rendered, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=_ANSWER_TOKENS, do_sample=False)
    answers = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return [a.strip() for a in answers]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True, help="float32 Hugging Face folder")
    args = parser.parse_args(argv)
    prompts = calibration.prompt_lines()
    answers = answer_all(args.model, prompts)
    lines = [json.dumps({"prompt": p, "answer": a}) for p, a in zip(prompts, answers, strict=True)]
    calibration.CHATS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} chats to {calibration.CHATS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
