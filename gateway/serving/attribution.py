"""Who a request is for, as the caller's platform bills it: the end user (OpenAI's ``user``)
and tags, from the request's ``metadata`` (each pair a ``key:value`` tag) and the
``x-llmgw-tags`` header (comma-separated). Each ledger row keeps them, so spend groups by
user and tag. Bounded here, per request; a refusal is a 400 naming the field it came from.
Distinct values per tenant are bounded when the row is written (``gateway/metering``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.errors import InvalidRequestError

TAGS_HEADER = "x-llmgw-tags"
MAX_USER_CHARS = 256
MAX_TAG_CHARS = 64  # a header tag
MAX_TAGS = 16  # header tags, and metadata pairs (as OpenAI's metadata)
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512


@dataclass(frozen=True)
class Attribution:
    """The end user and the tags (sorted, distinct); ``sources`` names the field each tag
    came from (``metadata`` or the header), for refusals."""

    user: str | None = None
    tags: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.user is not None and not 0 < len(self.user) <= MAX_USER_CHARS:
            raise ValueError(f"user has 1 to {MAX_USER_CHARS} characters")
        if len(self.sources) != len(self.tags) or list(self.tags) != sorted(set(self.tags)):
            raise ValueError("tags are sorted and distinct, each with its source")

    def source_of(self, tag: str) -> str:
        return self.sources[self.tags.index(tag)]


NOBODY = Attribution()


def _user(user: str | None) -> str | None:
    if user is None or user == "":
        return None
    if len(user) > MAX_USER_CHARS:
        raise InvalidRequestError(f"user has at most {MAX_USER_CHARS} characters", param="user")
    return user


def _metadata_tags(metadata: Mapping[str, str] | None) -> list[str]:
    if not metadata:
        return []
    if len(metadata) > MAX_TAGS:
        raise InvalidRequestError(f"metadata has at most {MAX_TAGS} pairs", param="metadata")
    for key, value in metadata.items():
        if not 0 < len(key) <= MAX_METADATA_KEY_CHARS or len(value) > MAX_METADATA_VALUE_CHARS:
            raise InvalidRequestError(
                f"metadata keys have 1 to {MAX_METADATA_KEY_CHARS} characters and values at "
                f"most {MAX_METADATA_VALUE_CHARS}", param="metadata")
    return [f"{key}:{value}" for key, value in metadata.items()]


def _header_tags(header: str | None) -> list[str]:
    if header is None:
        return []
    tags = [tag.strip() for tag in header.split(",") if tag.strip()]
    if len(tags) > MAX_TAGS or any(len(tag) > MAX_TAG_CHARS for tag in tags):
        raise InvalidRequestError(
            f"{TAGS_HEADER} holds at most {MAX_TAGS} comma-separated tags of at most "
            f"{MAX_TAG_CHARS} characters", param=TAGS_HEADER)
    return tags


def attribution_of(user: str | None, metadata: Mapping[str, str] | None,
                   tags_header: str | None) -> Attribution:
    """The request's attribution, or a 400 naming ``user``, ``metadata`` or the header."""
    found = {tag: "metadata" for tag in _metadata_tags(metadata)}
    for tag in _header_tags(tags_header):
        found.setdefault(tag, TAGS_HEADER)
    tags = tuple(sorted(found))
    return Attribution(_user(user), tags, tuple(found[tag] for tag in tags))
