"""The EAGLE-3 head: unroll is exactly vLLM's token-by-token drafting; files are what vLLM loads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.nn import functional as F

from draft_models.eagle3 import Eagle3Head, Eagle3Shape, draft_vocabulary, write_vllm_folder
from draft_models.head_layers import HeadShape, rope, rotate

LAYER = HeadShape(hidden=32, intermediate=64, heads=4, kv_heads=2, rope_theta=10000.0,
                  rms_eps=1e-5)
SHAPE = Eagle3Shape(LAYER, aux_layers=(1, 2, 3), draft_vocab=10)


def _step(head: Eagle3Head, embed: torch.Tensor, state: torch.Tensor, position: int,
          cache: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """vLLM's layer on one token: [norm(embed), norm(state)] attends to ``cache``."""
    mid: Any = head.midlayer
    attn, d = mid.self_attn, LAYER.hidden // LAYER.heads
    x = torch.cat((mid.input_layernorm(embed), mid.hidden_norm(state)), dim=-1)
    cos, sin = rope(1, position, d, LAYER.rope_theta, x.device)
    q = rotate(attn.q_proj(x).view(1, LAYER.heads, 1, d), cos, sin)
    k = rotate(attn.k_proj(x).view(1, LAYER.kv_heads, 1, d), cos, sin)
    cache.append((k, attn.v_proj(x).view(1, LAYER.kv_heads, 1, d)))
    a = F.scaled_dot_product_attention(q, torch.cat([c[0] for c in cache], 2),
                                       torch.cat([c[1] for c in cache], 2), enable_gqa=True)
    h = state + attn.o_proj(a.reshape(1, -1))
    out: torch.Tensor = h + mid.mlp(mid.post_attention_layernorm(h))
    return out


def _draft_from(head: Eagle3Head, embeds: torch.Tensor, aux: torch.Tensor, n: int,
                steps: int) -> list[torch.Tensor]:
    """Prefill positions 0..n from the target's streams, then feed the head's own state."""
    cache: list[tuple[torch.Tensor, torch.Tensor]] = []
    out = torch.zeros(1, LAYER.hidden)
    for p in range(n + 1):
        out = _step(head, embeds[p + 1][None], head.combine(aux[p][None]), p, cache)
    outs = [out]
    for s in range(1, steps):
        outs.append(_step(head, embeds[n + s + 1][None], outs[-1], n + s, cache))
    return outs


def test_unroll_when_compared_with_step_by_step_drafting_then_identical() -> None:
    torch.manual_seed(0)
    head = Eagle3Head(SHAPE)
    for p in head.parameters():  # norms and all: nothing left at its neutral init
        torch.nn.init.normal_(p, 0.0, 0.3)
    length, steps = 12, 3
    embeds, aux = torch.randn(length, LAYER.hidden), torch.randn(length, 3 * LAYER.hidden)
    with torch.no_grad():
        batched = head.unroll(embeds[None], aux[None], steps)
        for n in range(length - steps - 1):
            reference = _draft_from(head, embeds, aux, n, steps)
            for s in range(steps):
                torch.testing.assert_close(batched[s][0, n], reference[s][0],
                                           rtol=1e-4, atol=1e-5)


def test_draft_vocabulary_when_built_then_most_written_tokens_sorted_and_mapped_back() -> None:
    vocab = draft_vocabulary([(7, 7, 7, 3), (3, 9, 40, 40, 40, 40)], size=3)
    assert vocab.tolist() == [3, 7, 40]  # 9 is written once: left out
    head = Eagle3Head(Eagle3Shape(LAYER, (1,), draft_vocab=3))
    with torch.no_grad():
        head.d2t.copy_(vocab - torch.arange(3))
    assert head.target_ids(torch.tensor([2, 0, 1])).tolist() == [40, 3, 7]


def test_write_vllm_folder_then_names_and_config_are_what_vllm_eagle3_loads(
    tmp_path: Path
) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (target / "config.json").write_text(json.dumps(
        {"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 4, "hidden_size": 32,
         "vocab_size": 50, "tie_word_embeddings": True}))
    (target / "tokenizer.json").write_text("{}")
    write_vllm_folder(Eagle3Head(SHAPE), target, tmp_path / "head")
    from safetensors.torch import load_file

    tensors = load_file(str(tmp_path / "head" / "model.safetensors"))
    assert {"fc.weight", "fc_norm.2.weight", "midlayer.hidden_norm.weight", "norm.weight",
            "midlayer.input_layernorm.weight", "lm_head.weight", "d2t"} <= set(tensors)
    assert tensors["midlayer.self_attn.q_proj.weight"].shape == (32, 64)  # reads 2H
    assert tensors["d2t"].dtype == torch.int64 and tensors["lm_head.weight"].shape == (10, 32)
    assert not any("embed" in n for n in tensors)
    config = json.loads((tmp_path / "head" / "config.json").read_text())
    assert config["architectures"] == ["Eagle3LlamaForCausalLM"] and config["fc_norm"] is True
    assert config["draft_vocab_size"] == 10 and config["vocab_size"] == 50
    assert config["eagle_aux_hidden_state_layer_ids"] == [1, 2, 3]
    assert config["num_hidden_layers"] == 1 and not config["tie_word_embeddings"]


def test_eagle3_shape_when_no_streams_or_vocabulary_then_rejected() -> None:
    with pytest.raises(ValueError, match="aux_layers"):
        Eagle3Shape(LAYER, (), draft_vocab=10)
    with pytest.raises(ValueError, match="draft_vocab"):
        Eagle3Shape(LAYER, (0, 1), draft_vocab=10)
