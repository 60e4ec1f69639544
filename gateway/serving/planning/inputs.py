"""OpenAI's four forms of a text input (a prompt, an embedding input): a string, a list of
strings, a list of token ids, a list of token-id lists; as a list of inputs."""

from __future__ import annotations

Input = str | list[int]


def as_inputs(value: str | list[str] | list[int] | list[list[int]]) -> list[Input]:
    if isinstance(value, str):
        return [value]
    if value and all(isinstance(i, int) for i in value):
        return [value]  # type: ignore[list-item]  # one input of token ids
    return list(value)  # type: ignore[arg-type]  # several strings or token lists
