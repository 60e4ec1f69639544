"""Prompts to token ids with the model's own tokenizer and chat template."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class RenderedMessage:
    role: str
    content: str

    def __post_init__(self) -> None:
        if self.role not in ("system", "user", "assistant"):
            raise ValueError(f"role {self.role!r} cannot be rendered")


class PromptRenderer(Protocol):
    @property
    def vocab_size(self) -> int: ...

    def render_chat(self, messages: Sequence[RenderedMessage]) -> list[int]: ...

    def encode(self, text: str) -> list[int]: ...


class HfPromptRenderer:
    """Renders with the Hugging Face tokenizer saved beside the model weights."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer

    @classmethod
    def from_folder(cls, folder: Path) -> HfPromptRenderer:
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(str(folder)))

    @property
    def vocab_size(self) -> int:
        return len(self._tokenizer)

    def render_chat(self, messages: Sequence[RenderedMessage]) -> list[int]:
        conversation = [{"role": m.role, "content": m.content} for m in messages]
        ids = self._tokenizer.apply_chat_template(
            conversation, add_generation_prompt=True, tokenize=True, return_dict=False
        )
        return [int(i) for i in ids]

    def encode(self, text: str) -> list[int]:
        return [int(i) for i in self._tokenizer.encode(text, add_special_tokens=False)]
