"""A chat template that fails is the client's 400, saying no more than the template said."""

from __future__ import annotations

from typing import Any

import pytest
from jinja2 import TemplateError

from gateway.errors import ChatTemplateError
from gateway.serving.rendering import ChatPrompt, HfPromptRenderer, RenderedMessage

PROMPT = ChatPrompt((RenderedMessage("user", "hi"),))


class FailingTokenizer:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def apply_chat_template(self, *args: Any, **kwargs: Any) -> list[int]:
        raise self.exc


def test_render_when_template_raises_its_own_error_then_client_reads_that_message() -> None:
    renderer = HfPromptRenderer(FailingTokenizer(TemplateError("roles must alternate")))
    with pytest.raises(ChatTemplateError) as caught:
        renderer.render_chat(PROMPT)
    assert caught.value.param == "messages"
    assert "roles must alternate" in str(caught.value)


def test_render_when_tokenizer_fails_then_no_exception_text_reaches_the_client() -> None:
    internal = TypeError("TextEncodeInput must be Union[TextInputSequence, Tuple[...]]")
    renderer = HfPromptRenderer(FailingTokenizer(internal))
    with pytest.raises(ChatTemplateError) as caught:
        renderer.render_chat(PROMPT)
    assert caught.value.param == "messages"
    assert "TextEncodeInput" not in str(caught.value)
    assert "TypeError" not in str(caught.value)
    assert str(caught.value) == "the model's chat template cannot render these messages"
