"""The kinds of draft: what each is called, how its card names it, where it is stored.

A kind's ``name`` is the speculation method that serves it, the value of ``method:`` in
configs/ (``draft_model``, ``eagle``, ``eagle3``); its card names it by
``architecture.type``. Everything that handles a draft looks its kind up here instead of
comparing strings: ``draft train --arch``, ``draft install``, the bench. This module is
light (no torch); how a kind trains, ships and installs is its recipe
(``draft_models/recipes.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from draft_models.registry import CARD_NAME, read_card

Architecture = Mapping[str, Any]  # a card's ``architecture`` section


@dataclass(frozen=True)
class DraftKind:
    name: str  # the speculation method that serves it (configs/, engine/config.py)
    arch_type: str  # the card's ``architecture.type``
    weights_file: str  # the trained tensors shipped next to the card
    shipped_as: str  # the shipped folder: a format of ``target``
    installed_as: str  # the installed folder: a format of ``target`` and the architecture
    describe: Callable[[Architecture], str]  # the report's one-line summary
    aliases: tuple[str, ...] = ()  # older names ``draft train --arch`` still accepts
    fine_tunes: bool = False  # can start from a shipped head (``--init-from``)

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or not self.arch_type.isidentifier():
            raise ValueError(f"name and arch_type must be identifiers: {self!r}")
        if not self.weights_file.endswith(".safetensors"):
            raise ValueError(f"{self.name}: weights_file must be a .safetensors file")
        if "{target}" not in self.shipped_as or "{target}" not in self.installed_as:
            raise ValueError(f"{self.name}: folder names must contain {{target}}")

    def shipped_name(self, target: str) -> str:
        """The folder ``draft train`` writes under draft_models/shipped/."""
        return self.shipped_as.format(target=target)

    def installed_name(self, card: Mapping[str, Any]) -> str:
        """The folder ``draft install`` writes into the model cache."""
        return self.installed_as.format(target=card["target"]["name"], **card["architecture"])


def _small_llama(arch: Architecture) -> str:
    return f"{arch['num_layers']}-layer Llama sharing the target's embeddings and head"


def _eagle_head(arch: Architecture) -> str:
    return ("EAGLE head (one layer on the target's hidden states) sharing the target's "
            "embeddings and head")


def _eagle3_head(arch: Architecture) -> str:
    return (f"EAGLE-3 head (one layer on the target's streams after layers "
            f"{', '.join(map(str, arch['aux_layers']))}) with its own "
            f"{arch['draft_vocab']}-token head, sharing the target's embeddings")


DRAFT_MODEL = DraftKind("draft_model", "LlamaForCausalLM", "layers.safetensors",
                        shipped_as="{target}", installed_as="{target}-draft-{num_layers}l",
                        describe=_small_llama, aliases=("llama",))
EAGLE = DraftKind("eagle", "EagleHead", "eagle.safetensors", shipped_as="{target}-eagle",
                  installed_as="{target}-eagle", describe=_eagle_head)
EAGLE3 = DraftKind("eagle3", "Eagle3Head", "eagle3.safetensors", shipped_as="{target}-eagle3",
                   installed_as="{target}-eagle3", describe=_eagle3_head, fine_tunes=True)
KINDS = (DRAFT_MODEL, EAGLE, EAGLE3)


def kind_named(name: str) -> DraftKind:
    """The kind called ``name`` (or one of its aliases); ``ValueError`` names the choices."""
    for kind in KINDS:
        if name == kind.name or name in kind.aliases:
            return kind
    raise ValueError(f"unknown draft kind {name!r}: one of {', '.join(k.name for k in KINDS)}")


def kind_of_card(card: Mapping[str, Any]) -> DraftKind:
    """The kind a draft card describes (by ``architecture.type``)."""
    arch_type = card["architecture"]["type"]
    for kind in KINDS:
        if kind.arch_type == arch_type:
            return kind
    raise ValueError(f"unknown draft architecture {arch_type!r}")


def installed_kind(folder: Path) -> DraftKind | None:
    """The kind of a folder ``draft install`` wrote (it keeps the card); None for others."""
    return kind_of_card(read_card(folder)) if (folder / CARD_NAME).is_file() else None
