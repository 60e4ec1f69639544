"""The draft's shape: a few Llama layers on the target's own embeddings.

The draft is a ``LlamaForCausalLM`` with the target's width, tokenizer, embeddings and
(tied) output head; only its ``num_layers`` decoder layers and final norm are trained.
The layers start as copies of chosen target layers, which beats random initialisation
by a wide margin. Because the shared parts are frozen, a draft ships as just its
trained tensors (``layers.safetensors``) and is re-tied to the target's embeddings
when it is materialised into a folder vLLM can load.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TRAINED_PREFIXES = ("model.layers.", "model.norm.")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                    "chat_template.jinja", "generation_config.json")


def default_init_layers(num_layers: int, target_layers: int) -> tuple[int, ...]:
    """Evenly spaced target layers, always including the first and the last."""
    if not 1 <= num_layers <= target_layers:
        raise ValueError(f"num_layers must be in [1, {target_layers}]")
    if num_layers == 1:
        return (target_layers - 1,)
    step = (target_layers - 1) / (num_layers - 1)
    return tuple(round(i * step) for i in range(num_layers))


def build_from_target(target: Any, init_layers: Sequence[int]) -> Any:
    """A draft ``LlamaForCausalLM`` whose layers copy ``init_layers`` of ``target``."""
    import copy

    from transformers import LlamaForCausalLM

    config = copy.deepcopy(target.config)
    config.num_hidden_layers = len(init_layers)
    if getattr(config, "layer_types", None):
        config.layer_types = [config.layer_types[i] for i in init_layers]
    draft = LlamaForCausalLM(config)  # type: ignore[no-untyped-call]
    source = target.state_dict()
    state = {}
    for name in draft.state_dict():
        if name.startswith("model.layers."):
            index, rest = name[len("model.layers."):].split(".", 1)
            state[name] = source[f"model.layers.{init_layers[int(index)]}.{rest}"].clone()
        else:
            state[name] = source[name].clone()
    draft.load_state_dict(state)
    draft.tie_weights()
    return draft


def freeze_shared(draft: Any) -> list[Any]:
    """Freeze embeddings and head; return the parameters left to train."""
    trainable = []
    for name, param in draft.named_parameters():
        param.requires_grad = name.startswith(TRAINED_PREFIXES)
        if param.requires_grad:
            trainable.append(param)
    return trainable


def trained_tensors(draft: Any) -> dict[str, Any]:
    return {
        name: tensor.detach().contiguous()
        for name, tensor in draft.state_dict().items()
        if name.startswith(TRAINED_PREFIXES)
    }


def load_draft(target_dir: Path, layers_file: Path, num_layers: int) -> Any:
    """Rebuild a draft in memory from the target folder and its trained tensors."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    target = AutoModelForCausalLM.from_pretrained(str(target_dir), dtype=torch.float32)
    draft = build_from_target(target, default_init_layers(num_layers, _layers_of(target)))
    tensors = {k: v.to(torch.float32) for k, v in load_file(str(layers_file)).items()}
    missing = set(trained_tensors(draft)) - set(tensors)
    if missing:
        raise ValueError(f"{layers_file} lacks {sorted(missing)[:3]}...")
    draft.load_state_dict(tensors, strict=False)
    return draft


def write_hf_folder(draft: Any, target_dir: Path, folder: Path) -> None:
    """Save a full float32 folder (weights, config, tokenizer) that vLLM can load."""
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    draft.save_pretrained(str(staging))
    for name in _TOKENIZER_FILES:
        if (target_dir / name).is_file():
            shutil.copy2(target_dir / name, staging / name)
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)


def _layers_of(model: Any) -> int:
    return int(model.config.num_hidden_layers)
