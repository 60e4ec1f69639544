from __future__ import annotations

import math

import pytest

from engine.quantization.quality import agreement, common_prefix, perplexity


def test_perplexity_of_uniform_guesses_is_the_vocabulary_size() -> None:
    assert perplexity([math.log(1 / 50)] * 10) == pytest.approx(50)


def test_perplexity_needs_tokens() -> None:
    with pytest.raises(ValueError, match="no tokens"):
        perplexity([])


def test_common_prefix_stops_at_the_first_difference() -> None:
    assert common_prefix([1, 2, 3, 4], [1, 2, 9, 4]) == 2
    assert common_prefix([1, 2], [1, 2, 3]) == 2


def test_agreement_counts_identical_answers_and_mean_prefix() -> None:
    result = agreement([[1, 2, 3, 4], [5, 6]], [[1, 2, 3, 4], [5, 7]])
    assert (result.prompts, result.identical) == (2, 1)
    assert result.mean_prefix_fraction == pytest.approx((1.0 + 0.5) / 2)


def test_agreement_needs_matching_answer_lists() -> None:
    with pytest.raises(ValueError, match="same"):
        agreement([[1]], [[1], [2]])
