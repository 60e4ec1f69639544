"""A tiny Llama target (random weights, 128-token vocabulary) for fast draft tests."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from draft_models.datagen import Sample, _write_shard, shard_path


def write_tokenizer(folder: Path, vocab_size: int) -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    vocab = {f"w{i}": i for i in range(vocab_size)}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="w0"))
    tokenizer.pre_tokenizer = Whitespace()  # type: ignore[assignment]
    tokenizer.save(str(folder / "tokenizer.json"))


def make_target(folder: Path, vocab_size: int = 128) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=2,
                         pad_token_id=2, max_position_embeddings=256)
    LlamaForCausalLM(config).save_pretrained(str(folder))
    write_tokenizer(folder, vocab_size)
    return folder


@pytest.fixture(scope="session")
def tiny_target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_target(tmp_path_factory.mktemp("tiny-target"))


def chain_samples(count: int, seed: int = 0) -> list[Sample]:
    """Answers where each token fixes the next (a bigram rule): quick to learn."""
    rng = random.Random(seed)
    samples = []
    for _ in range(count):
        token, output = rng.randrange(3, 128), []
        for _ in range(24):
            token = (token * 7 + 3) % 125 + 3
            output.append(token)
        top_ids = tuple((t, (t + 1) % 125 + 3) for t in output)
        top_lps = tuple((-0.1, -2.5) for _ in output)
        samples.append(Sample((1, output[0]), tuple(output), top_ids, top_lps))
    return samples


class QuietReporter:
    """A build reporter that shows nothing."""

    def stage(self, name: str, total: int) -> None:
        pass

    def advance(self, done: int, total: int, info: str = "") -> None:
        pass


def write_split(work: Path, samples: list[Sample], train: int) -> None:
    """Distillation data as ``generate_data`` leaves it: one shard each of train and heldout."""
    for sub, part in (("train", samples[:train]), ("heldout", samples[train:])):
        (work / sub).mkdir(parents=True)
        _write_shard(shard_path(work / sub, 0), part)
