"""engine/vllm_plugin.py: steps scheduled with no drafts skip the drafter's forward pass.

The wrapper is tested on a stand-in proposer here (the engine tests in
test_speculation_identity.py run it inside vLLM); the checks against vLLM itself pin the
names the wrapper relies on, so a vLLM upgrade that moves them fails here.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

from engine import vllm_plugin
from engine.vllm_plugin import problem, register, skipping_idle_drafts, skips_idle_drafts

SKIP = {"llm_gateway": {"draft_under_load": "skip"}}


@dataclass
class _Metadata:
    reqs: int

    def batch_size(self) -> int:
        return self.reqs


@dataclass
class _VllmConfig:
    additional_config: dict[str, Any]


@dataclass
class _Proposer:
    """Records the forward passes vLLM's ``propose`` would run."""

    vllm_config: _VllmConfig
    passes: list[int] = field(default_factory=list)
    num_speculative_tokens: int = -1

    def propose(self, num_speculative_tokens: int, target_token_ids: torch.Tensor,
                common_attn_metadata: _Metadata) -> torch.Tensor:
        self.passes.append(num_speculative_tokens)
        return torch.ones(common_attn_metadata.batch_size(), num_speculative_tokens)


def _propose(proposer: _Proposer, k: int, reqs: int = 3) -> torch.Tensor:
    wrapped = skipping_idle_drafts(_Proposer.propose)
    out: torch.Tensor = wrapped(proposer, num_speculative_tokens=k,
                                target_token_ids=torch.zeros(reqs, dtype=torch.int64),
                                common_attn_metadata=_Metadata(reqs))
    return out


def test_step_without_drafts_when_skip_is_configured_then_drafter_does_not_run() -> None:
    proposer = _Proposer(_VllmConfig(SKIP))
    drafts = _propose(proposer, k=0, reqs=5)
    assert drafts.shape == (5, 0) and drafts.dtype == torch.int64
    assert proposer.passes == []
    assert proposer.num_speculative_tokens == 0


def test_step_with_drafts_runs_the_drafter_even_when_skip_is_configured() -> None:
    proposer = _Proposer(_VllmConfig(SKIP))
    assert _propose(proposer, k=2).shape == (3, 2)
    assert proposer.passes == [2]


@pytest.mark.parametrize("additional", [{}, {"llm_gateway": {"draft_under_load": "fill"}},
                                        {"other_plugin": {"draft_under_load": "skip"}}])
def test_step_without_drafts_when_skip_is_not_configured_then_drafter_fills_its_cache(
    additional: dict[str, Any],
) -> None:
    proposer = _Proposer(_VllmConfig(additional))
    _propose(proposer, k=0)
    assert proposer.passes == [0]


def test_skip_is_read_only_from_a_well_formed_config() -> None:
    assert skips_idle_drafts(SKIP)
    assert not skips_idle_drafts(None)
    assert not skips_idle_drafts({"llm_gateway": "skip"})


def test_register_wraps_vllms_proposer_once() -> None:
    from vllm.v1.spec_decode.llm_base_proposer import SpecDecodeBaseProposer

    register()
    wrapped = SpecDecodeBaseProposer.propose
    register()
    assert SpecDecodeBaseProposer.propose is wrapped
    assert getattr(wrapped, vllm_plugin._WRAPPED)


def test_vllms_propose_still_takes_the_arguments_the_wrapper_reads() -> None:
    from vllm.v1.spec_decode.llm_base_proposer import SpecDecodeBaseProposer

    params = inspect.signature(inspect.unwrap(SpecDecodeBaseProposer.propose)).parameters
    assert {"num_speculative_tokens", "target_token_ids", "common_attn_metadata"} <= set(params)


def test_plugin_is_installed_for_vllm_and_a_narrow_vllm_plugins_list_is_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("VLLM_PLUGINS", raising=False)
    assert problem() is None
    monkeypatch.setenv("VLLM_PLUGINS", "llm_gateway,other")
    assert problem() is None
    monkeypatch.setenv("VLLM_PLUGINS", "other")
    assert problem() == "VLLM_PLUGINS='other' leaves out 'llm_gateway'"
