"""Each kind of draft's recipe (``draft_models/plan.py``), looked up by kind."""

from __future__ import annotations

from draft_models import draft_model_build, eagle3_build, eagle_build
from draft_models.kinds import DraftKind
from draft_models.plan import Recipe

RECIPES = (draft_model_build.RECIPE, eagle_build.RECIPE, eagle3_build.RECIPE)


def recipe_for(kind: DraftKind) -> Recipe:
    for recipe in RECIPES:
        if recipe.kind == kind:
            return recipe
    raise ValueError(f"no recipe for draft kind {kind.name!r}")
