"""The prompts every target receives, in the same order, so runs compare like for like.

``chat`` asks for long answers, so most requests run to ``max_tokens`` (the API has no
``ignore_eos``; the real completion length always comes from the server's usage chunk).
``rewrite`` asks to repeat a given text: the case prompt-lookup speculation is built for.
"""

from __future__ import annotations

from typing import Literal

Workload = Literal["chat", "rewrite"]

_TOPICS = (
    "the history of the printing press", "how vaccines train the immune system",
    "the water cycle", "how a bicycle stays upright", "the causes of the French Revolution",
    "how compilers turn source code into machine code", "the life cycle of stars",
    "why the sky is blue", "how bees communicate", "the invention of the telephone",
    "plate tectonics and earthquakes", "how photosynthesis works",
    "the rules and strategy of chess", "how the internet routes packets",
    "the Roman road network", "how coffee is grown and roasted",
)

_PASSAGES = (
    "The library opens at nine in the morning and closes at six in the evening. Visitors "
    "may borrow up to five books at a time for three weeks. Late returns cost ten cents a "
    "day. The reading room on the second floor is reserved for quiet study.",
    "def mean(values):\n    total = 0\n    for value in values:\n        total += value\n"
    "    return total / len(values)\n\n\ndef variance(values):\n    m = mean(values)\n"
    "    return sum((v - m) ** 2 for v in values) / len(values)\n",
    "Preheat the oven to 200 degrees. Mix the flour, the sugar and the salt in a large bowl. "
    "Add the butter and rub it in until the mixture looks like breadcrumbs. Stir in the "
    "milk, shape the dough into rounds and bake for fifteen minutes until golden.",
    "Our team meets every Monday at ten. Each person reports what they finished last week, "
    "what they plan this week and anything that blocks them. Notes go into the shared "
    "folder the same day, and action items get an owner and a date.",
)


def messages(workload: Workload, index: int) -> list[dict[str, str]]:
    """The chat messages of request ``index`` (distinct prompts, cycled)."""
    if workload == "chat":
        topic = _TOPICS[index % len(_TOPICS)]
        text = (f"Write a long, detailed essay of at least 600 words about {topic}. "
                "Use several paragraphs and explain every step carefully.")
    else:
        passage = _PASSAGES[index % len(_PASSAGES)]
        text = f"Repeat the following text exactly, word for word, twice:\n\n{passage}"
    return [{"role": "user", "content": text}]
