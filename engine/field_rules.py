"""The rules a frozen dataclass declares in its field types, checked on an instance.

Engine settings are declared once, in ``engine/config.py``, as frozen dataclasses whose field
types carry their rules: ``Literal`` choices and ``annotated_types`` bounds
(``Annotated[int, Ge(16)]``). Pydantic enforces the same annotations where settings are read
(``gateway/settings.py``) and the Helm values schema is generated from them
(``gateway/chart_schema.py``); ``check_fields`` enforces them when code builds the dataclass
directly.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Bound = tuple[Any, bool]  # (value, inclusive)


@dataclass(frozen=True)
class FieldRule:
    """What one field's type allows beyond its Python type: choices and numeric bounds."""

    name: str
    choices: tuple[object, ...] | None = None
    lower: Bound | None = None
    upper: Bound | None = None

    def problem(self, value: object) -> str | None:
        """Why ``value`` breaks the rule, or None (None itself is the type's business)."""
        if value is None:
            return None
        if self.choices is not None and value not in self.choices:
            return f"{self.name} must be one of {', '.join(map(repr, self.choices))}"
        if isinstance(value, int | float) and not self._within(value):
            return f"{self.name} must be {self.range_text()}"
        return None

    def _within(self, value: float) -> bool:
        if self.lower is not None:
            bound, inclusive = self.lower
            if value < bound or (value == bound and not inclusive):
                return False
        if self.upper is not None:
            bound, inclusive = self.upper
            if value > bound or (value == bound and not inclusive):
                return False
        return True

    def range_text(self) -> str:
        lower, upper = self.lower, self.upper
        if lower is not None and upper is not None:
            return f"in {'[' if lower[1] else '('}{lower[0]}, {upper[0]}{']' if upper[1] else ')'}"
        if lower is not None:
            return f"{'at least' if lower[1] else 'greater than'} {lower[0]}"
        if upper is not None:
            return f"{'at most' if upper[1] else 'less than'} {upper[0]}"
        return "any number"


def check_fields(instance: object, declared: type[DataclassInstance]) -> None:
    """ValueError naming the first field of ``declared`` whose value breaks its type's rule."""
    for rule in field_rules(declared):
        if (problem := rule.problem(getattr(instance, rule.name))) is not None:
            raise ValueError(problem)


@functools.cache
def field_rules(declared: type[DataclassInstance]) -> tuple[FieldRule, ...]:
    """The rules of each field ``declared`` itself has (inherited ones included)."""
    hints = typing.get_type_hints(declared, include_extras=True)
    return tuple(_rule(field.name, hints[field.name]) for field in dataclasses.fields(declared))


def _rule(name: str, hint: Any) -> FieldRule:
    choices: tuple[object, ...] | None = None
    lower: Bound | None = None
    upper: Bound | None = None
    for member in _union_members(hint):
        base, metadata = _split_annotated(member)
        if get_origin(base) is Literal:
            choices = get_args(base)
        for item in metadata:
            lower = _lower(item) or lower
            upper = _upper(item) or upper
    return FieldRule(name, choices, lower, upper)


def _union_members(hint: Any) -> tuple[Any, ...]:
    if get_origin(hint) in (Union, types.UnionType):
        return tuple(arg for arg in get_args(hint) if arg is not type(None))
    return (hint,)


def _split_annotated(hint: Any) -> tuple[Any, list[Any]]:
    if get_origin(hint) is not Annotated:
        return hint, []
    base, *metadata = get_args(hint)
    flat: list[Any] = []
    for item in metadata:
        flat += list(item) if isinstance(item, at.GroupedMetadata) else [item]
    return base, flat


def _lower(item: Any) -> Bound | None:
    if isinstance(item, at.Ge):
        return item.ge, True
    if isinstance(item, at.Gt):
        return item.gt, False
    return None


def _upper(item: Any) -> Bound | None:
    if isinstance(item, at.Le):
        return item.le, True
    if isinstance(item, at.Lt):
        return item.lt, False
    return None
