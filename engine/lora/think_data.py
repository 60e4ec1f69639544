"""Training data for the think adapter, made by the project itself: prompts from a few
task families whose answers are computed, each target a short ``<think>...</think>`` span
with the working, then the answer. Seeded, so the same seed gives the same examples."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

THINK_START = "<think>"
THINK_END = "</think>"


@dataclass(frozen=True)
class ThinkExample:
    prompt: str
    reasoning: str
    answer: str

    @property
    def target(self) -> str:
        return f"{THINK_START}{self.reasoning}{THINK_END}{self.answer}"


Family = Callable[[random.Random], ThinkExample]

_CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid",
    "Japan": "Tokyo", "Canada": "Ottawa", "Egypt": "Cairo", "Kenya": "Nairobi",
    "Peru": "Lima", "Norway": "Oslo", "Greece": "Athens", "Portugal": "Lisbon",
    "Austria": "Vienna", "Poland": "Warsaw", "Ireland": "Dublin", "Chile": "Santiago",
}
_WORDS = ["apple", "banana", "river", "mountain", "garden", "pencil", "window", "planet",
          "yellow", "summer", "rocket", "silver", "coffee", "dragon", "forest", "bottle"]


def _add(rng: random.Random) -> ThinkExample:
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    ask = rng.choice(["What is {a} + {b}?", "Add {a} and {b}.", "Compute {a} plus {b}."])
    return ThinkExample(ask.format(a=a, b=b), f"I add {a} and {b}: {a} + {b} = {a + b}.",
                        f"The answer is {a + b}.")


def _subtract(rng: random.Random) -> ThinkExample:
    a, b = sorted((rng.randint(2, 99), rng.randint(2, 99)), reverse=True)
    ask = rng.choice(["What is {a} - {b}?", "Subtract {b} from {a}."])
    return ThinkExample(ask.format(a=a, b=b), f"I take {b} away from {a}: {a} - {b} = {a - b}.",
                        f"The answer is {a - b}.")


def _multiply(rng: random.Random) -> ThinkExample:
    a, b = rng.randint(2, 12), rng.randint(2, 12)
    ask = rng.choice(["What is {a} times {b}?", "Multiply {a} by {b}.", "What is {a} x {b}?"])
    return ThinkExample(ask.format(a=a, b=b), f"{a} groups of {b} make {a} x {b} = {a * b}.",
                        f"The answer is {a * b}.")


def _larger(rng: random.Random) -> ThinkExample:
    a, b = rng.sample(range(1, 500), 2)
    big = max(a, b)
    return ThinkExample(f"Which is larger, {a} or {b}?",
                        f"I compare {a} and {b}. {big} is the bigger number.",
                        f"{big} is larger.")


def _parity(rng: random.Random) -> ThinkExample:
    n = rng.randint(1, 999)
    kind = "even" if n % 2 == 0 else "odd"
    return ThinkExample(f"Is {n} even or odd?",
                        f"The last digit of {n} is {n % 10}, so {n} is {kind}.",
                        f"{n} is {kind}.")


def _letters(rng: random.Random) -> ThinkExample:
    word = rng.choice(_WORDS)
    return ThinkExample(f"How many letters are in the word \"{word}\"?",
                        f"I spell it: {'-'.join(word)}. That is {len(word)} letters.",
                        f"\"{word}\" has {len(word)} letters.")


def _first_letter(rng: random.Random) -> ThinkExample:
    word = rng.choice(_WORDS)
    return ThinkExample(f"What is the first letter of \"{word}\"?",
                        f"The word {word} starts with {word[0]}.",
                        f"The first letter is \"{word[0]}\".")


def _capital(rng: random.Random) -> ThinkExample:
    country, city = rng.choice(sorted(_CAPITALS.items()))
    ask = rng.choice(["What is the capital of {c}?", "Name the capital city of {c}."])
    return ThinkExample(ask.format(c=country),
                        f"The user asks about {country}. Its capital is {city}.",
                        f"The capital of {country} is {city}.")


def _minutes(rng: random.Random) -> ThinkExample:
    hours = rng.randint(1, 12)
    return ThinkExample(f"How many minutes are in {hours} hours?",
                        f"One hour has 60 minutes, so {hours} x 60 = {hours * 60}.",
                        f"{hours} hours is {hours * 60} minutes.")


def _sort(rng: random.Random) -> ThinkExample:
    values = rng.sample(range(1, 100), 3)
    ordered = ", ".join(str(v) for v in sorted(values))
    shown = ", ".join(str(v) for v in values)
    return ThinkExample(f"Sort these numbers from smallest to largest: {shown}.",
                        f"The smallest is {min(values)} and the largest is {max(values)}.",
                        f"In order: {ordered}.")


FAMILIES: tuple[Family, ...] = (_add, _subtract, _multiply, _larger, _parity, _letters,
                                _first_letter, _capital, _minutes, _sort)


def make_examples(count: int, seed: int = 0) -> list[ThinkExample]:
    """``count`` examples, the families taken in turn, the values drawn from ``seed``."""
    rng = random.Random(seed)
    return [FAMILIES[i % len(FAMILIES)](rng) for i in range(count)]
