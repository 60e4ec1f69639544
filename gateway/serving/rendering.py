"""Prompts to token ids with the model's own tokenizer and chat template.

A ``ChatPrompt`` is what the template sees: the messages (tool calls and tool results
included), the tool definitions and any extra template variables. A template that fails
on a request's content is the client's 400 (``ChatTemplateError``), never a 500.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from gateway.errors import ChatTemplateError

log = logging.getLogger("llm_gateway.serving")
ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class RenderedToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the client sent it

    def as_template(self) -> dict[str, Any]:
        """Templates index into the arguments: an object when they parse as one."""
        try:
            arguments: Any = json.loads(self.arguments)
        except ValueError:
            arguments = self.arguments
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": arguments}}


@dataclass(frozen=True)
class RenderedMessage:
    role: str
    content: str
    tool_calls: tuple[RenderedToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role {self.role!r} cannot be rendered")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry tool calls")

    def as_template(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [call.as_template() for call in self.tool_calls]
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            message["name"] = self.name
        return message


@dataclass(frozen=True)
class ChatPrompt:
    messages: tuple[RenderedMessage, ...]
    tools: tuple[dict[str, Any], ...] = ()  # OpenAI tool definitions, shown to the template
    template_kwargs: tuple[tuple[str, Any], ...] = ()  # extra template variables
    add_generation_prompt: bool = True
    continue_final_message: bool = False

    def __post_init__(self) -> None:
        if not self.messages:
            raise ValueError("a chat prompt needs messages")
        if self.add_generation_prompt and self.continue_final_message:
            raise ValueError("continue_final_message needs add_generation_prompt off")
        if self.continue_final_message and self.messages[-1].role != "assistant":
            raise ValueError("continue_final_message needs a final assistant message")

    @property
    def chars(self) -> int:
        return sum(len(m.content) + sum(len(c.arguments) for c in m.tool_calls)
                   for m in self.messages)


class PromptRenderer(Protocol):
    @property
    def vocab_size(self) -> int: ...

    def render_chat(self, prompt: ChatPrompt) -> list[int]: ...

    def encode(self, text: str) -> list[int]: ...


def _template_refusal(exc: Exception) -> str:
    """What the client is told: the template's own words when it refused the messages
    (``raise_exception`` in the template, a jinja ``TemplateError``), nothing of any other
    exception's text (a tokenizer's or the template code's internals)."""
    from jinja2 import TemplateError

    said = "the model's chat template cannot render these messages"
    if isinstance(exc, TemplateError) and str(exc):
        return f"{said}: {str(exc)[:200]}"
    log.info("chat template failed on a request: %s: %s", type(exc).__name__, str(exc)[:200])
    return said


class HfPromptRenderer:
    """Renders with the Hugging Face tokenizer saved beside the model weights; ``template``
    replaces the tokenizer's own chat template (``chat_template`` in the model settings)."""

    def __init__(self, tokenizer: Any, template: str | None = None) -> None:
        self._tokenizer = tokenizer
        self._template = template

    @classmethod
    def from_folder(cls, folder: Path, template: Path | None = None) -> HfPromptRenderer:
        from transformers import AutoTokenizer

        text = template.read_text() if template is not None else None
        return cls(AutoTokenizer.from_pretrained(str(folder)), text)

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    @property
    def vocab_size(self) -> int:
        return len(self._tokenizer)

    def render_chat(self, prompt: ChatPrompt) -> list[int]:
        kwargs = dict(prompt.template_kwargs)
        try:
            ids = self._tokenizer.apply_chat_template(
                [m.as_template() for m in prompt.messages],
                tools=list(prompt.tools) or None,
                chat_template=self._template,
                add_generation_prompt=prompt.add_generation_prompt,
                continue_final_message=prompt.continue_final_message,
                tokenize=True, return_dict=False, **kwargs,
            )
        except Exception as exc:  # jinja's errors, and template code failing on content
            raise ChatTemplateError(_template_refusal(exc), param="messages") from exc
        return [int(i) for i in ids]

    def encode(self, text: str) -> list[int]:
        return [int(i) for i in self._tokenizer.encode(text, add_special_tokens=False)]

    def encode_input(self, text: str) -> list[int]:
        """An embedding model's input: with the special tokens its encoder expects."""
        return [int(i) for i in self._tokenizer.encode(text, add_special_tokens=True)]
