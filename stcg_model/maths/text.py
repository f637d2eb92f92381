"""Question words, content/function kinds, and VQA answer normalisation and accuracy."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

FUNCTION_WORDS = frozenset(
    """
a an the this that these those there here what which who whom whose where when why how
is are was were be been being am do does did done has have had having can could will would shall should
may might must of in on at by for with about against between into through during before after above below
to from up down over under again further then once and or but nor so yet if because as until while than
it its it's they them their theirs he him his she her hers we us our ours you your yours i me my mine
any some all both each few more most other such no not only own same too very s t just
""".split()
)

_WORD = re.compile(r"[A-Za-z0-9]+(?:'[A-Za-z]+)?|[^\sA-Za-z0-9]")


def word_spans(text: str) -> list[tuple[str, int, int]]:
    """(word, start, end) for every word or punctuation mark in ``text``."""
    return [(m.group(0), m.start(), m.end()) for m in _WORD.finditer(text)]


def word_kind(word: str) -> str:
    """'punct', 'function' (stop word) or 'content'."""
    if not any(ch.isalnum() for ch in word):
        return "punct"
    return "function" if word.lower() in FUNCTION_WORDS else "content"


def group_tokens(text: str, offsets: Sequence[tuple[int, int]]) -> tuple[list[str], list[int]]:
    """Words of ``text`` and, per token (by character ``offsets``), the index of its word.

    A token belongs to the word its first non-space character falls in; a token outside every
    word (rare) becomes a word of its own.
    """
    spans = word_spans(text)
    words = [w for w, _, _ in spans]
    token_word: list[int] = []
    for start, end in offsets:
        s = start
        while s < end and text[s].isspace():
            s += 1
        idx = next((j for j, (_, a, b) in enumerate(spans) if a <= s < b), None)
        if idx is None:
            words.append(text[start:end].strip() or "?")
            idx = len(words) - 1
        token_word.append(idx)
    return words, token_word


# ---------------------------------------------------------------- VQA answer normalisation
_CONTRACTIONS = {
    "aint": "ain't",
    "arent": "aren't",
    "cant": "can't",
    "couldnt": "couldn't",
    "didnt": "didn't",
    "doesnt": "doesn't",
    "dont": "don't",
    "hadnt": "hadn't",
    "hasnt": "hasn't",
    "havent": "haven't",
    "hes": "he's",
    "im": "i'm",
    "isnt": "isn't",
    "itd": "it'd",
    "itll": "it'll",
    "ive": "i've",
    "shes": "she's",
    "shouldnt": "shouldn't",
    "thats": "that's",
    "theres": "there's",
    "theyre": "they're",
    "wasnt": "wasn't",
    "werent": "weren't",
    "whats": "what's",
    "wont": "won't",
    "wouldnt": "wouldn't",
    "youre": "you're",
    "youve": "you've",
}
_NUMBERS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_ARTICLES = {"a", "an", "the"}
_PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")


@lru_cache(maxsize=65536)  # answers repeat a lot (one per perturbation per example)
def normalize_answer(answer: str) -> str:
    """The official VQA evaluation's answer normalisation (punctuation, digits, articles, contractions)."""
    out = answer.replace("\n", " ").replace("\t", " ").strip().lower()
    for p in _PUNCT:
        if (p + " " in out or " " + p in out) or re.search(_COMMA_STRIP, out) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    out = _PERIOD_STRIP.sub("", out)
    words = []
    for w in out.split():
        w = _NUMBERS.get(w, w)
        if w in _ARTICLES:
            continue
        words.append(_CONTRACTIONS.get(w, w))
    return " ".join(words)


def vqa_accuracy(prediction: str, human_answers: Sequence[str]) -> float:
    """min(#humans that gave the prediction / 3, 1), averaged over the 10 leave-one-out subsets.

    With fewer than 10 answers (e.g. a single ground truth) this reduces to exact match when
    there is one answer.
    """
    pred = normalize_answer(prediction)
    gts = [normalize_answer(a) for a in human_answers]
    if not gts:
        raise ValueError("vqa_accuracy needs at least one human answer")
    if len(gts) == 1:
        return float(pred == gts[0])
    accs = []
    for i in range(len(gts)):
        others = gts[:i] + gts[i + 1 :]
        accs.append(min(sum(g == pred for g in others) / 3.0, 1.0))
    return float(sum(accs) / len(accs))
