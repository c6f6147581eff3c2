"""summarize: through the provider when one is configured, else an extractive summary.

The extractive summary keeps the ``max_sentences`` sentences whose words are most frequent in
the whole text (stop words aside), in their original order.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from tasks.catalog import ChatInput, ChatMessage, SummarizeInput
from workers.skills.spec import SkillContext

_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[a-z0-9']+")
_STOP = frozenset(
    "a an and are as at be by for from has have in is it its of on or that the this to was "
    "were will with not but they their there which who what when".split()
)


def extractive_summary(text: str, max_sentences: int) -> str:
    """The ``max_sentences`` most central sentences of ``text``, in order."""
    sentences = [part.strip() for part in _SENTENCE.split(text.strip()) if part.strip()]
    if len(sentences) <= max_sentences:
        return " ".join(sentences)
    frequency = Counter(
        word for word in _WORD.findall(text.lower()) if word not in _STOP and len(word) > 2
    )

    def score(sentence: str) -> float:
        words = [word for word in _WORD.findall(sentence.lower()) if word in frequency]
        return float(sum(frequency[word] for word in words) / (len(words) + 1) ** 0.5)

    ranked = sorted(range(len(sentences)), key=lambda index: -score(sentences[index]))
    chosen = sorted(ranked[:max_sentences])
    return " ".join(sentences[index] for index in chosen)


def summarize(params: SummarizeInput, context: SkillContext) -> dict[str, Any]:
    """Return ``{"summary", "method"}`` (``provider`` or ``extractive``)."""
    if context.settings.provider == "none":
        return {
            "summary": extractive_summary(params.text, params.max_sentences),
            "method": "extractive",
        }
    from tasks.chat import chat

    prompt = (
        f"Summarize the following text in at most {params.max_sentences} sentences. "
        f"Answer with the summary only.\n\n{params.text}"
    )
    answer = chat(
        ChatInput(
            messages=[ChatMessage(role="user", content=prompt)],
            persona=params.persona,
            use_cache=params.use_cache,
        ),
        context,
    )
    return {"summary": answer["text"], "method": "provider", "model": answer["model"]}
