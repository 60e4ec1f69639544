"""A request's attribution: its end user and tags, bounded, each tag knowing its source."""

from __future__ import annotations

import pytest

from gateway.errors import InvalidRequestError
from gateway.serving.attribution import NOBODY, TAGS_HEADER, Attribution, attribution_of


def test_attribution_when_metadata_and_header_then_pairs_and_tags_sorted_once() -> None:
    found = attribution_of("alice", {"team": "search", "env": "prod"}, " b , a,,team:search")
    assert found == Attribution("alice", ("a", "b", "env:prod", "team:search"),
                                (TAGS_HEADER, TAGS_HEADER, "metadata", "metadata"))
    assert found.source_of("a") == TAGS_HEADER


def test_attribution_when_nothing_named_then_nobody() -> None:
    assert attribution_of(None, None, None) == NOBODY
    assert attribution_of("", {}, " , ") == NOBODY


@pytest.mark.parametrize(("user", "metadata", "header", "param"), [
    ("u" * 257, None, None, "user"),
    (None, {f"k{i}": "v" for i in range(17)}, None, "metadata"),
    (None, {"k" * 65: "v"}, None, "metadata"),
    (None, {"k": "v" * 513}, None, "metadata"),
    (None, {"": "v"}, None, "metadata"),
    (None, None, ",".join(f"t{i}" for i in range(17)), TAGS_HEADER),
    (None, None, "t" * 65, TAGS_HEADER),
])
def test_attribution_when_past_a_bound_then_400_naming_its_field(
    user: str | None, metadata: dict[str, str] | None, header: str | None, param: str,
) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        attribution_of(user, metadata, header)
    assert refused.value.param == param


def test_attribution_when_built_unsorted_then_refused() -> None:
    with pytest.raises(ValueError, match="sorted"):
        Attribution(None, ("b", "a"), ("metadata", "metadata"))
