"""The EAGLE head: its batched unroll is exactly step-by-step drafting with a KV cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.nn import functional as F

from draft_models.eagle import EagleHead, write_vllm_folder
from draft_models.head_layers import HeadShape, rope, rotate

SHAPE = HeadShape(hidden=32, intermediate=64, heads=4, kv_heads=2, rope_theta=10000.0,
                  rms_eps=1e-5)


def _layer(head: EagleHead, x: torch.Tensor, position: int,
           cache: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """One token through the layer, attending to ``cache`` (then appended to it)."""
    layer: Any = head.layers[0]
    attn = layer.self_attn
    d = attn.head_dim
    cos, sin = rope(1, position, d, SHAPE.rope_theta, x.device)
    q = rotate(attn.q_proj(x).view(1, SHAPE.heads, 1, d), cos, sin)
    k = rotate(attn.k_proj(x).view(1, SHAPE.kv_heads, 1, d), cos, sin)
    v = attn.v_proj(x).view(1, SHAPE.kv_heads, 1, d)
    cache.append((k, v))
    keys = torch.cat([c[0] for c in cache], 2)
    values = torch.cat([c[1] for c in cache], 2)
    a = F.scaled_dot_product_attention(q, keys, values, enable_gqa=True).reshape(1, -1)
    h = x + attn.o_proj(a)
    out: torch.Tensor = h + layer.mlp(layer.post_attention_layernorm(h))
    return out


def _draft_from(head: EagleHead, embeds: torch.Tensor, hidden: torch.Tensor, n: int,
                steps: int) -> list[torch.Tensor]:
    """vLLM's way: prefill positions 0..n from the target, then one token per step."""
    cache: list[tuple[torch.Tensor, torch.Tensor]] = []
    out = torch.zeros(1, SHAPE.hidden)
    for p in range(n + 1):
        x = head.fc(torch.cat((embeds[p + 1], hidden[p]))[None])
        out = _layer(head, x, p, cache)
    outs = [out]
    for s in range(1, steps):
        x = head.fc(torch.cat((embeds[n + s + 1][None], outs[-1]), dim=-1))
        outs.append(_layer(head, x, n + s, cache))
    return outs


def test_unroll_when_compared_with_step_by_step_drafting_then_identical() -> None:
    torch.manual_seed(0)
    head = EagleHead(SHAPE)
    length, steps = 12, 3
    embeds, hidden = torch.randn(length, SHAPE.hidden), torch.randn(length, SHAPE.hidden)
    with torch.no_grad():
        batched = head.unroll(embeds[None], hidden[None], steps)
        for n in range(length - steps - 1):
            reference = _draft_from(head, embeds, hidden, n, steps)
            for s in range(steps):
                torch.testing.assert_close(batched[s][0, n], reference[s][0],
                                           rtol=1e-4, atol=1e-5)


def test_write_vllm_folder_then_names_are_what_vllm_eagle_loads(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (target / "config.json").write_text(json.dumps(
        {"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 30, "hidden_size": 32}))
    (target / "tokenizer.json").write_text("{}")
    write_vllm_folder(EagleHead(SHAPE), target, tmp_path / "head")
    from safetensors.torch import load_file

    names = set(load_file(str(tmp_path / "head" / "model.safetensors")))
    assert "fc.weight" in names and "layers.0.self_attn.q_proj.weight" in names
    assert not any("embed" in n or "lm_head" in n or "input_layernorm" in n for n in names)
    config = json.loads((tmp_path / "head" / "config.json").read_text())
    assert config["num_hidden_layers"] == 1 and (tmp_path / "head" / "tokenizer.json").is_file()


def test_head_shape_when_heads_do_not_divide_then_rejected() -> None:
    with pytest.raises(ValueError, match="divide"):
        HeadShape(hidden=30, intermediate=64, heads=4, kv_heads=2, rope_theta=1e4, rms_eps=1e-5)
