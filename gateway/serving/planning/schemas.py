"""A JSON schema from a request, checked cheapest first, each refusal a 400 naming the field.

1. One iterative walk (no recursion, linear): nesting at most ``limits.max_json_depth`` and
   vLLM's own bound (``MAX_STRUCTURED_OUTPUT_JSON_NESTING``, 64), no NaN or infinity.
2. Its size as compact JSON (``limits.max_schema_bytes``).
3. Local ``$ref`` pointers resolve, and no chain of ``$ref`` and in-place applicators
   (``allOf``, ``anyOf``, ...) leads back to where it started: such a cycle never consumes
   input (validators and grammar compilers would recurse through it for ever).
4. Only then the JSON Schema meta-schema (``jsonschema``, the costly step).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from gateway.errors import InvalidRequestError
from gateway.settings import LimitSettings

VLLM_MAX_NESTING = 64  # vllm.sampling_params.MAX_STRUCTURED_OUTPUT_JSON_NESTING
# Keywords whose subschemas apply at the same place in the instance as their parent.
IN_PLACE = ("allOf", "anyOf", "oneOf", "not", "if", "then", "else", "dependentSchemas")
# Where subschemas sit: maps of them, lists of them (or one), one.
SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions",
                         "dependentSchemas"})
SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems", "items"})
SCHEMA_VALUES = frozenset({"not", "if", "then", "else", "additionalProperties", "contains",
                           "propertyNames", "unevaluatedItems", "unevaluatedProperties",
                           "additionalItems"})


def compact(value: Any) -> str:
    """Compact JSON keeping the client's key order (the order arguments are generated in)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def utf8_size(text: str, param: str) -> int:
    """Bytes of ``text`` as UTF-8; a lone surrogate (a JSON ``\\ud800`` escape) has none."""
    try:
        return len(text.encode())
    except UnicodeEncodeError:
        raise InvalidRequestError(f"{param} holds text that is not valid Unicode (a lone "
                                  "surrogate)", param=param) from None


def bounded_walk(value: Any, param: str, max_depth: int) -> None:
    """Nesting of arrays and objects at most ``max_depth``; every number finite."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, float) and not math.isfinite(node):
            raise InvalidRequestError(f"{param} holds a non-finite number", param=param)
        if isinstance(node, dict | list):
            if level > max_depth:
                raise InvalidRequestError(
                    f"{param} nests deeper than {max_depth} levels", param=param)
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, level + 1) for child in children)


def checked_schema(schema: dict[str, Any], param: str, limits: LimitSettings) -> str:
    """The schema as compact JSON, once every check above has passed."""
    bounded_walk(schema, param, min(limits.max_json_depth, VLLM_MAX_NESTING))
    text = compact(schema)
    if utf8_size(text, param) > limits.max_schema_bytes:
        raise InvalidRequestError(f"{param} exceeds {limits.max_schema_bytes} bytes",
                                  param=param)
    _refs_progress(schema, param)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        raise InvalidRequestError(
            f"{param} is not a valid JSON schema: {exc.message}"
            + (f" (at {where})" if where else ""), param=param) from exc
    return text


def _resolve(root: dict[str, Any], ref: str, param: str) -> Any:
    """The subschema a local JSON pointer (``#/$defs/x``) names; None for other refs."""
    if ref != "#" and not ref.startswith("#/"):
        return None  # an anchor or another document: the backend's business
    node: Any = root
    for token in ref[2:].split("/") if ref != "#" else ():
        token = unquote(token).replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise InvalidRequestError(f"{param}: $ref '{ref[:100]}' points nowhere",
                                      param=param)
    return node


def _in_place(node: dict[str, Any], root: dict[str, Any], param: str) -> Iterator[Any]:
    """The subschemas that apply at the same place in the instance as ``node``."""
    ref = node.get("$ref")
    if isinstance(ref, str) and (target := _resolve(root, ref, param)) is not None:
        yield target
    for keyword in IN_PLACE:
        child = node.get(keyword)
        if isinstance(child, list):
            yield from child
        elif isinstance(child, dict):
            yield from (child.values() if keyword == "dependentSchemas" else (child,))


def _refs_progress(root: dict[str, Any], param: str) -> None:
    """Every ``$ref`` resolves, and no in-place chain is a cycle (iterative DFS)."""
    for node in _subschemas(root):
        if isinstance(node.get("$ref"), str):
            _resolve(root, node["$ref"], param)
    done: set[int] = set()
    for start in _subschemas(root):
        if id(start) in done:
            continue
        path: set[int] = {id(start)}
        stack: list[tuple[dict[str, Any], Iterator[Any]]] = [
            (start, _in_place(start, root, param))]
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.discard(id(node))
                done.add(id(node))
            elif isinstance(child, dict) and id(child) not in done:
                if id(child) in path:
                    raise InvalidRequestError(
                        f"{param}: a $ref cycle never consumes input (a schema that "
                        "refers to itself without a property or item in between)",
                        param=param)
                path.add(id(child))
                stack.append((child, _in_place(child, root, param)))


def _subschemas(root: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every subschema (iteratively), found by keyword: a ``const`` or ``enum`` value that
    happens to hold a ``"$ref"`` key is data, not a schema."""
    stack: list[Any] = [root]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        yield node
        for keyword, value in node.items():
            if keyword in SCHEMA_MAPS and isinstance(value, dict):
                stack.extend(value.values())
            elif keyword in SCHEMA_LISTS and isinstance(value, list):
                stack.extend(value)
            elif keyword in SCHEMA_LISTS or keyword in SCHEMA_VALUES:
                stack.append(value)
