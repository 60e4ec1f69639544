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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

WEIGHTS_FILE = "model.safetensors"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                    "chat_template.jinja", "generation_config.json")


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


class _Attention(nn.Module):
    def __init__(self, shape: HeadShape) -> None:
        super().__init__()
        self.head_dim = shape.hidden // shape.heads
        self.heads, self.kv_heads = shape.heads, shape.kv_heads
        self.q_proj = nn.Linear(shape.hidden, shape.hidden, bias=False)
        self.k_proj = nn.Linear(shape.hidden, shape.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(shape.hidden, shape.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(shape.hidden, shape.hidden, bias=False)


class _Mlp(nn.Module):
    def __init__(self, shape: HeadShape) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(shape.hidden, shape.intermediate, bias=False)
        self.up_proj = nn.Linear(shape.hidden, shape.intermediate, bias=False)
        self.down_proj = nn.Linear(shape.intermediate, shape.hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))  # type: ignore[no-any-return]


class _Layer(nn.Module):
    def __init__(self, shape: HeadShape) -> None:
        super().__init__()
        self.self_attn = _Attention(shape)
        self.post_attention_layernorm = nn.RMSNorm(shape.hidden, eps=shape.rms_eps)
        self.mlp = _Mlp(shape)


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
            q, k, v = self._qkv(attn, x, s)
            keys.append(k)
            values.append(v)
            mask = _step_mask(n, s + 1, x.device)
            a = F.scaled_dot_product_attention(q, torch.cat(keys, 2), torch.cat(values, 2),
                                               attn_mask=mask, enable_gqa=True)
            a = a.transpose(1, 2).reshape(x.shape)
            h = x + attn.o_proj(a)
            out = h + layer.mlp(layer.post_attention_layernorm(h))
            outs.append(out)
            if s + 1 < passes:
                x = self.fc(torch.cat((_shift(embeds, s + 2, n), out), dim=-1))
        return outs

    def _qkv(self, attn: Any, x: torch.Tensor, offset: int) -> tuple[torch.Tensor, ...]:
        b, n, _ = x.shape
        d = attn.head_dim
        q = attn.q_proj(x).view(b, n, attn.heads, d).transpose(1, 2)
        k = attn.k_proj(x).view(b, n, attn.kv_heads, d).transpose(1, 2)
        v = attn.v_proj(x).view(b, n, attn.kv_heads, d).transpose(1, 2)
        cos, sin = _rope(n, offset, d, self.shape.rope_theta, x.device)
        return _rotate(q, cos, sin), _rotate(k, cos, sin), v


def _shift(embeds: torch.Tensor, by: int, n: int) -> torch.Tensor:
    """Rows ``by .. by+n-1`` of ``embeds``, zero-padded past the end."""
    out = embeds.new_zeros((embeds.shape[0], n, embeds.shape[2]))
    avail = max(0, min(n, embeds.shape[1] - by))
    out[:, :avail] = embeds[:, by:by + avail]
    return out


def _step_mask(n: int, steps: int, device: torch.device) -> torch.Tensor:
    """Step ``steps-1`` queries: causal over step 0's keys, then each later step's own key."""
    causal = torch.ones((n, n), dtype=torch.bool, device=device).tril()
    eye = torch.eye(n, dtype=torch.bool, device=device)
    return torch.cat([causal] + [eye] * (steps - 1), dim=1)


def _rope(n: int, offset: int, dim: int, theta: float,
          device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    inv = 1.0 / (theta ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim))
    pos = torch.arange(offset, offset + n, device=device, dtype=torch.float32)
    freqs = torch.outer(pos, inv)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


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
    from safetensors.torch import save_file

    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    config = json.loads((target_dir / "config.json").read_text())
    config.update(num_hidden_layers=1, architectures=["LlamaForCausalLM"])
    config.pop("layer_types", None)
    (staging / "config.json").write_text(json.dumps(config, indent=2))
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in head.state_dict().items()}
    save_file(tensors, str(staging / WEIGHTS_FILE))
    for name in _TOKENIZER_FILES:
        if (target_dir / name).is_file():
            shutil.copy2(target_dir / name, staging / name)
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
