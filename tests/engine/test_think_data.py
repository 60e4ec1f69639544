"""The think adapter's training data: seeded, every family taken in turn, each target one
``<think>`` span with the working, then an answer that agrees with it."""

from __future__ import annotations

import re

from engine.lora.think_data import FAMILIES, THINK_END, THINK_START, make_examples


def test_examples_when_made_twice_with_one_seed_then_identical() -> None:
    assert make_examples(50, seed=3) == make_examples(50, seed=3)
    assert make_examples(50, seed=3) != make_examples(50, seed=4)


def test_examples_when_made_then_each_target_is_one_span_then_an_answer() -> None:
    examples = make_examples(10 * len(FAMILIES))
    assert len({e.prompt.split()[0] for e in examples}) > 5  # the families differ
    for example in examples:
        target = example.target
        assert target.startswith(THINK_START) and target.count(THINK_END) == 1
        reasoning, answer = target[len(THINK_START):].split(THINK_END)
        assert reasoning.strip() and answer.strip()


def test_arithmetic_when_asked_then_reasoning_and_answer_hold_the_true_result() -> None:
    for example in make_examples(40):
        if match := re.fullmatch(r"What is (\d+) \+ (\d+)\?", example.prompt):
            total = str(int(match[1]) + int(match[2]))
            assert total in example.reasoning and total in example.answer
