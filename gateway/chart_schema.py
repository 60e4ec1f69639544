"""The Helm chart's schema for a model's ``settings``, generated from ``ModelSettings``.

``helm/llm-gateway/values.schema.json`` types ``models.<name>.settings``, the model's entry in
``models.yaml``. That part of the file is generated here from the settings (whose engine keys
``engine/config.py`` declares), so a field, bound or choice reaches the chart with the commit that
adds it: ``python -m gateway.chart_schema`` rewrites the file, ``--check`` fails when the committed
one differs (``tests/helm/test_values_schema.py`` runs the same comparison).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from gateway.settings import ModelSettings

REPO = Path(__file__).resolve().parent.parent
CHART_SCHEMA = REPO / "helm" / "llm-gateway" / "values.schema.json"
SETTINGS_PATH = ("properties", "models", "additionalProperties", "properties", "settings")
CHART_WRITTEN = ("replicas", "replicas_dns", "replica_api_key_env")  # the chart sets these
# JSON Schema keywords the chart's schema keeps, in the order it writes them. Anything else that
# pydantic emits for a constraint fails the generation instead of silently going missing.
_KEPT = ("type", "enum", "minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum",
         "minLength", "maxLength", "pattern", "items", "properties", "additionalProperties",
         "required")
_DROPPED = frozenset({"title", "description", "default", "format"})  # documentation only


def settings_schema() -> dict[str, Any]:
    """The JSON schema (draft-07, no references) of one model's ``settings`` in the chart."""
    raw = TypeAdapter(ModelSettings).json_schema()
    schema = _plain(raw, raw.get("$defs", {}))
    order = [field.name for field in dataclasses.fields(ModelSettings)]
    schema["properties"] = {name: schema["properties"][name] for name in order
                            if name not in CHART_WRITTEN}
    return schema


def render(chart_schema: str) -> str:
    """``chart_schema`` (the file's text) with its model settings section regenerated."""
    document = json.loads(chart_schema)
    parent = document
    for key in SETTINGS_PATH[:-1]:
        parent = parent[key]
    parent[SETTINGS_PATH[-1]] = settings_schema()
    return json.dumps(document, indent=2) + "\n"


def _plain(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        node = {**defs[node["$ref"].rsplit("/", 1)[-1]],
                **{k: v for k, v in node.items() if k != "$ref"}}
    if "anyOf" in node:
        node = _nullable(node, defs)
    unknown = set(node) - set(_KEPT) - _DROPPED - {"$defs"}
    if unknown:
        raise ValueError(f"no chart schema for {sorted(unknown)} in {node}")
    out: dict[str, Any] = {}
    for key in _KEPT:
        if key not in node or (key == "type" and "enum" in node):
            continue
        value = node[key]
        if key == "properties":
            value = {name: _plain(child, defs) for name, child in value.items()}
        elif key == "items":
            value = _plain(value, defs)
        out[key] = value
    if "properties" in out:
        out["additionalProperties"] = False  # settings refuse unknown keys at every level
    return out


def _nullable(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """``X | None`` (pydantic's ``anyOf``) as the chart writes it: ``type: [x, "null"]``."""
    members = [member for member in node["anyOf"] if member != {"type": "null"}]
    if len(members) != 1 or len(node["anyOf"]) != 2:
        raise ValueError(f"no chart schema for the union {node['anyOf']}")
    inner = _plain(members[0], defs)
    rest = {key: value for key, value in node.items() if key != "anyOf"}
    if "enum" in inner:
        return {**rest, **inner, "enum": [*inner["enum"], None]}
    return {**rest, **inner, "type": [inner["type"], "null"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.chart_schema", description=__doc__)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the committed schema differs instead of rewriting it")
    parser.add_argument("--path", type=Path, default=CHART_SCHEMA)
    args = parser.parse_args(argv)
    committed = args.path.read_text()
    generated = render(committed)
    if generated == committed:
        return 0
    if args.check:
        print(f"{args.path} is out of date: run python -m gateway.chart_schema", file=sys.stderr)
        return 1
    args.path.write_text(generated)
    print(f"{args.path}: model settings regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
