"""An EAGLE head: one decoder layer that drafts from the target's own hidden states.

A small Llama draft has to guess the next token from token ids alone; an EAGLE head is
given the target's final hidden state at the last position, which already encodes most
of what the target will say next. Each drafting step it takes ``(embedding of token
p+1, hidden state at p)``, fuses them with ``fc`` (2H -> H), runs one Llama decoder
layer (no input norm) and hands ``hidden + residual`` to the target's own head; the
result is both the draft's logits and the hidden state it feeds itself for the next
draft token. This is exactly vLLM's ``EagleLlamaForCausalLM`` (``method: eagle``), and
the tensor names here are the ones it loads; embeddings and head are the target's.

``unroll`` runs ``passes`` drafting steps over a whole sequence at once, with the
attention mask vLLM's cache implies (training-time test, as in EAGLE-3): step ``s`` at
index ``i`` sits at position ``i + s`` and sees the first step's keys up to ``i`` plus
its own earlier steps' keys at ``i``. Its outputs are the draft's guesses for the
target's hidden state at ``i + s + 1`` and for the token after it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from draft_models.head_layers import Attention, HeadShape, Mlp, attend, shift

WEIGHTS_FILE = "model.safetensors"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                    "chat_template.jinja", "generation_config.json")


class _Layer(nn.Module):
    def __init__(self, shape: HeadShape) -> None:
        super().__init__()
        self.self_attn = Attention(shape)
        self.post_attention_layernorm = nn.RMSNorm(shape.hidden, eps=shape.rms_eps)
        self.mlp = Mlp(shape)


class EagleHead(nn.Module):
    def __init__(self, shape: HeadShape) -> None:
        super().__init__()
        self.shape = shape
        self.fc = nn.Linear(2 * shape.hidden, shape.hidden, bias=False)
        self.layers = nn.ModuleList([_Layer(shape)])

    def unroll(self, embeds: torch.Tensor, hidden: torch.Tensor, passes: int) -> list[torch.Tensor]:
        """``embeds``: (B, L, H) of tokens 0..L-1; ``hidden``: the target's (B, L, H).

        Returns ``passes`` tensors (B, L-1, H): step ``s`` at index ``i`` predicts the
        target's hidden state at position ``i + s + 1``.
        """
        layer: Any = self.layers[0]
        attn = layer.self_attn
        n = embeds.shape[1] - 1
        x = self.fc(torch.cat((embeds[:, 1:], hidden[:, :-1]), dim=-1))
        keys: list[torch.Tensor] = []
        values: list[torch.Tensor] = []
        outs = []
        for s in range(passes):
            q, k, v = attn.qkv(x, s, self.shape.rope_theta)
            keys.append(k)
            values.append(v)
            h = x + attend(attn, q, keys, values, self.shape.hidden)
            out = h + layer.mlp(layer.post_attention_layernorm(h))
            outs.append(out)
            if s + 1 < passes:
                x = self.fc(torch.cat((shift(embeds, s + 2, n), out), dim=-1))
        return outs


def init_from_target(head: EagleHead, target: Any) -> None:
    """Start as the identity on the target's state, with the target's last layer's weights.

    ``fc`` passes the hidden state through and the layer's two output projections start
    at zero, so the untrained head returns its input: the target's last layer, fed
    un-normalised states, would otherwise blow them up, more with every drafting step.
    """
    last = target.model.layers[-1]
    layer: Any = head.layers[0]
    with torch.no_grad():
        for name in ("q_proj", "k_proj", "v_proj"):
            getattr(layer.self_attn, name).weight.copy_(getattr(last.self_attn, name).weight)
        for name in ("gate_proj", "up_proj"):
            getattr(layer.mlp, name).weight.copy_(getattr(last.mlp, name).weight)
        layer.self_attn.o_proj.weight.zero_()
        layer.mlp.down_proj.weight.zero_()
        layer.post_attention_layernorm.weight.copy_(last.post_attention_layernorm.weight)
        h = head.shape.hidden
        head.fc.weight.normal_(0.0, 0.02)
        head.fc.weight[:, h:] += torch.eye(h)


def write_vllm_folder(head: EagleHead, target_dir: Path, folder: Path) -> None:
    """A folder vLLM serves with ``method: eagle``: config, ``fc`` + one layer, tokenizer."""
    config = json.loads((target_dir / "config.json").read_text())
    config.update(num_hidden_layers=1, architectures=["LlamaForCausalLM"])
    config.pop("layer_types", None)
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in head.state_dict().items()}
    write_head_folder(config, tensors, target_dir, folder)


def write_head_folder(config: dict[str, Any], tensors: dict[str, torch.Tensor],
                      target_dir: Path, folder: Path) -> None:
    """Config, tensors and the target's tokenizer files, staged and then moved into place."""
    from safetensors.torch import save_file

    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    (staging / "config.json").write_text(json.dumps(config, indent=2))
    save_file(tensors, str(staging / WEIGHTS_FILE))
    for name in _TOKENIZER_FILES:
        if (target_dir / name).is_file():
            shutil.copy2(target_dir / name, staging / name)
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
