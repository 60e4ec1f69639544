"""The pieces of a drafting head's decoder layer, shared by the EAGLE heads.

A head's layer is a Llama decoder layer whose attention may read a wider input (EAGLE-3
feeds it the token's embedding and the hidden state side by side). ``step_mask`` is the
attention mask vLLM's KV cache implies when ``passes`` drafting steps are unrolled over a
whole sequence at once (training-time test): step ``s`` at index ``i`` sits at position
``i + s`` and sees the first step's keys up to ``i`` plus its own earlier steps' keys at
``i``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class HeadShape:
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    rope_theta: float
    rms_eps: float

    def __post_init__(self) -> None:
        if self.hidden % self.heads or self.heads % self.kv_heads:
            raise ValueError("hidden must divide into heads, heads into kv_heads")

    @classmethod
    def of(cls, config: Any) -> HeadShape:
        rope = getattr(config, "rope_parameters", None) or {}
        theta = rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))
        return cls(int(config.hidden_size), int(config.intermediate_size),
                   int(config.num_attention_heads), int(config.num_key_value_heads),
                   float(theta), float(config.rms_norm_eps))


class Attention(nn.Module):
    def __init__(self, shape: HeadShape, in_features: int | None = None) -> None:
        super().__init__()
        width = in_features or shape.hidden
        self.head_dim = shape.hidden // shape.heads
        self.heads, self.kv_heads = shape.heads, shape.kv_heads
        self.q_proj = nn.Linear(width, shape.hidden, bias=False)
        self.k_proj = nn.Linear(width, shape.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(width, shape.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(shape.hidden, shape.hidden, bias=False)

    def qkv(self, x: torch.Tensor, offset: int,
            theta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Heads-first q, k (rotated for positions ``offset..``) and v of ``x`` (B, L, W)."""
        b, n, _ = x.shape
        d = self.head_dim
        q = self.q_proj(x).view(b, n, self.heads, d).transpose(1, 2)
        k = self.k_proj(x).view(b, n, self.kv_heads, d).transpose(1, 2)
        v = self.v_proj(x).view(b, n, self.kv_heads, d).transpose(1, 2)
        cos, sin = rope(n, offset, d, theta, x.device)
        return rotate(q, cos, sin), rotate(k, cos, sin), v


class Mlp(nn.Module):
    def __init__(self, shape: HeadShape) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(shape.hidden, shape.intermediate, bias=False)
        self.up_proj = nn.Linear(shape.hidden, shape.intermediate, bias=False)
        self.down_proj = nn.Linear(shape.intermediate, shape.hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))  # type: ignore[no-any-return]


def attend(attn: Attention, q: torch.Tensor, keys: list[torch.Tensor],
           values: list[torch.Tensor], width: int) -> torch.Tensor:
    """Unrolled step ``len(keys)-1``'s attention output, projected: (B, L, H)."""
    n = q.shape[2]
    mask = step_mask(n, len(keys), q.device)
    a = F.scaled_dot_product_attention(q, torch.cat(keys, 2), torch.cat(values, 2),
                                       attn_mask=mask, enable_gqa=True)
    return attn.o_proj(a.transpose(1, 2).reshape(q.shape[0], n, width))  # type: ignore[no-any-return]


def shift(embeds: torch.Tensor, by: int, n: int) -> torch.Tensor:
    """Rows ``by .. by+n-1`` of ``embeds``, zero-padded past the end."""
    out = embeds.new_zeros((embeds.shape[0], n, embeds.shape[2]))
    avail = max(0, min(n, embeds.shape[1] - by))
    out[:, :avail] = embeds[:, by:by + avail]
    return out


def step_mask(n: int, steps: int, device: torch.device) -> torch.Tensor:
    """Step ``steps-1`` queries: causal over step 0's keys, then each later step's own key."""
    causal = torch.ones((n, n), dtype=torch.bool, device=device).tril()
    eye = torch.eye(n, dtype=torch.bool, device=device)
    return torch.cat([causal] + [eye] * (steps - 1), dim=1)


def rope(n: int, offset: int, dim: int, theta: float,
         device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    inv = 1.0 / (theta ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim))
    pos = torch.arange(offset, offset + n, device=device, dtype=torch.float32)
    freqs = torch.outer(pos, inv)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin
