"""An EAGLE-3 head: reads three of the target's layers and drafts over a small vocabulary.

On a CPU, a proposer that ends in the target's own output head pays for that head (49k x
576 for SmolLM2, a fifth of the target's weights) on every draft token. An EAGLE-3 head
has its own output head over the ``draft_vocab`` tokens the target actually writes, and
``d2t`` maps a draft id back to the target's (``target = draft + d2t[draft]``); a token
outside it is never drafted, and verification stays exact.

Each drafting step it takes the embedding of token ``p+1`` and a state: at the first step
``fc`` of the target's residual streams after ``aux_layers`` (each RMS-normed first,
vLLM's ``fc_norm``), later its own previous output. The layer reads ``[norm(embedding),
norm(state)]`` (2H) in attention and adds the state back as the residual; the output,
normed, goes to the draft head, and un-normed is the next step's state. This is exactly
vLLM's ``Eagle3LlamaForCausalLM`` (``method: eagle3``) and these are the names it loads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from draft_models.eagle import write_head_folder
from draft_models.head_layers import Attention, HeadShape, Mlp, attend, shift


@dataclass(frozen=True)
class Eagle3Shape:
    layer: HeadShape
    aux_layers: tuple[int, ...]  # target residual streams read: after this many layers
    draft_vocab: int

    def __post_init__(self) -> None:
        if not self.aux_layers or min(self.aux_layers) < 1 or self.draft_vocab < 2:
            raise ValueError("aux_layers must be >= 1 and draft_vocab >= 2")


class _MidLayer(nn.Module):
    def __init__(self, shape: HeadShape) -> None:
        super().__init__()
        self.input_layernorm = nn.RMSNorm(shape.hidden, eps=shape.rms_eps)
        self.hidden_norm = nn.RMSNorm(shape.hidden, eps=shape.rms_eps)
        self.self_attn = Attention(shape, in_features=2 * shape.hidden)
        self.post_attention_layernorm = nn.RMSNorm(shape.hidden, eps=shape.rms_eps)
        self.mlp = Mlp(shape)


class Eagle3Head(nn.Module):
    d2t: torch.Tensor  # draft id -> target id - draft id

    def __init__(self, shape: Eagle3Shape) -> None:
        super().__init__()
        self.shape = shape
        h, n = shape.layer.hidden, len(shape.aux_layers)
        self.fc_norm = nn.ModuleList([nn.RMSNorm(h, eps=shape.layer.rms_eps) for _ in range(n)])
        self.fc = nn.Linear(n * h, h, bias=False)
        self.midlayer = _MidLayer(shape.layer)
        self.norm = nn.RMSNorm(h, eps=shape.layer.rms_eps)
        self.lm_head = nn.Linear(h, shape.draft_vocab, bias=False)
        self.register_buffer("d2t", torch.zeros(shape.draft_vocab, dtype=torch.long))

    def combine(self, aux: torch.Tensor) -> torch.Tensor:
        """The target's streams ``(B, L, n*H)`` -> the first step's state ``(B, L, H)``."""
        chunks = aux.chunk(len(self.shape.aux_layers), dim=-1)
        normed = [norm(c) for norm, c in zip(self.fc_norm, chunks, strict=True)]
        out: torch.Tensor = self.fc(torch.cat(normed, dim=-1))
        return out

    def unroll(self, embeds: torch.Tensor, aux: torch.Tensor, passes: int) -> list[torch.Tensor]:
        """``embeds`` (B, L, H) of tokens 0..L-1; ``aux`` the target's (B, L, n*H).

        Returns ``passes`` un-normed states (B, L-1, H): step ``s`` at index ``i`` is the
        head's state whose logits guess token ``i + s + 2``.
        """
        mid: Any = self.midlayer
        n, width = embeds.shape[1] - 1, self.shape.layer.hidden
        x = self.combine(aux[:, :-1])
        e = mid.input_layernorm(embeds[:, 1:])
        keys: list[torch.Tensor] = []
        values: list[torch.Tensor] = []
        outs = []
        for s in range(passes):
            q, k, v = mid.self_attn.qkv(torch.cat((e, mid.hidden_norm(x)), dim=-1), s,
                                        self.shape.layer.rope_theta)
            keys.append(k)
            values.append(v)
            h = x + attend(mid.self_attn, q, keys, values, width)
            out = h + mid.mlp(mid.post_attention_layernorm(h))
            outs.append(out)
            if s + 1 < passes:
                x, e = out, mid.input_layernorm(shift(embeds, s + 2, n))
        return outs

    def logits(self, state: torch.Tensor) -> torch.Tensor:
        """Draft-vocabulary logits of an un-normed state."""
        return self.lm_head(self.norm(state))  # type: ignore[no-any-return]

    def target_ids(self, draft_ids: torch.Tensor) -> torch.Tensor:
        return draft_ids + self.d2t[draft_ids]


def draft_vocabulary(answers: list[tuple[int, ...]], size: int) -> torch.Tensor:
    """The ``size`` tokens the target writes most often (ties by id), sorted by id."""
    counts: dict[int, int] = {}
    for answer in answers:
        for token in answer:
            counts[token] = counts.get(token, 0) + 1
    ranked = sorted(counts, key=lambda t: (-counts[t], t))[:size]
    return torch.tensor(sorted(ranked), dtype=torch.long)


def init_from_target(head: Eagle3Head, target: Any, vocab: torch.Tensor) -> None:
    """Start as the target's own prediction from its last stream, over ``vocab``.

    ``fc`` passes the last aux stream through (normed as the target's final norm does),
    the layer's output projections start at zero and the draft head is the target's rows
    for ``vocab``; the rest of the layer starts from the target's last layer, the
    embedding half of attention small and random.
    """
    last, h = target.model.layers[-1], head.shape.layer.hidden
    mid: Any = head.midlayer
    with torch.no_grad():
        for name in ("q_proj", "k_proj", "v_proj"):
            weight = getattr(mid.self_attn, name).weight
            weight.normal_(0.0, 0.02)
            weight[:, h:] = getattr(last.self_attn, name).weight
        for name in ("gate_proj", "up_proj"):
            getattr(mid.mlp, name).weight.copy_(getattr(last.mlp, name).weight)
        mid.self_attn.o_proj.weight.zero_()
        mid.mlp.down_proj.weight.zero_()
        mid.hidden_norm.weight.copy_(last.input_layernorm.weight)
        mid.post_attention_layernorm.weight.copy_(last.post_attention_layernorm.weight)
        head.fc.weight.zero_()
        head.fc.weight[:, -h:] = torch.eye(h)
        last_norm: Any = head.fc_norm[-1]
        last_norm.weight.copy_(target.model.norm.weight)
        head.lm_head.weight.copy_(target.lm_head.weight[vocab])
        head.d2t.copy_(vocab - torch.arange(len(vocab)))


def vllm_config(head: Eagle3Head, target_config: dict[str, Any]) -> dict[str, Any]:
    config = dict(target_config)
    config.pop("layer_types", None)
    config.update(architectures=["Eagle3LlamaForCausalLM"], model_type="llama",
                  num_hidden_layers=1, draft_vocab_size=head.shape.draft_vocab,
                  target_hidden_size=head.shape.layer.hidden, fc_norm=True,
                  eagle_aux_hidden_state_layer_ids=list(head.shape.aux_layers),
                  tie_word_embeddings=False)
    return config


def write_vllm_folder(head: Eagle3Head, target_dir: Path, folder: Path) -> None:
    """A folder vLLM serves with ``method: eagle3``: config, head tensors, tokenizer."""
    config = vllm_config(head, json.loads((target_dir / "config.json").read_text()))
    tensors = {k: v.detach().contiguous() if k == "d2t" else v.detach().float().contiguous()
               for k, v in head.state_dict().items()}
    write_head_folder(config, tensors, target_dir, folder)
