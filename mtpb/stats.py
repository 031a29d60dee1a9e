"""`mtpb problems stats`: the shape of a suite (categories, turns, tests, output types, libraries)."""
from __future__ import annotations

import re
from collections import Counter

LIBRARY = re.compile(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", re.MULTILINE)


def output_type(value) -> str:
    return "None" if value is None else type(value).__name__


def suite_stats(problems) -> dict[str, dict]:
    turns = Counter(len(p.turns) for p in problems)
    libraries = Counter()
    for p in problems:
        code = "\n".join(t.solution or "" for t in p.turns)
        libraries.update(set(LIBRARY.findall(code)) | ({"numpy"} if "np." in code else set()))
    n = len(problems)
    return {
        "category": dict(Counter(p.category for p in problems).most_common()),
        "turns": {**{k: turns[k] for k in sorted(turns)},
                  "mean": round(sum(k * v for k, v in turns.items()) / n, 2) if n else 0,
                  "6 or more": sum(v for k, v in turns.items() if k >= 6)},
        "tests per problem": dict(Counter(len(p.tests) for p in problems)),
        "output type (by test)": dict(Counter(output_type(t.output) for p in problems for t in p.tests).most_common()),
        "library (problems using it)": dict(libraries.most_common()),
        "max_gen_length": dict(sorted(Counter(p.max_gen_length for p in problems).items())),
    }


def _trigrams(problem) -> set:
    words = re.findall(r"[a-z]+", " ".join(t.prompt for t in problem.turns).lower())
    return set(zip(words, words[1:], words[2:]))


def near_duplicates(problems, threshold: float = 0.5) -> list[tuple[float, int, int]]:
    """Pairs whose turn prompts share at least `threshold` of their word trigrams (Jaccard)."""
    grams = [(p.id, _trigrams(p)) for p in problems]
    pairs = []
    for i, (a, ga) in enumerate(grams):
        for b, gb in grams[i + 1:]:
            union = ga | gb
            score = len(ga & gb) / len(union) if union else 1.0
            if score >= threshold:
                pairs.append((round(score, 3), a, b))
    return sorted(pairs, reverse=True)
