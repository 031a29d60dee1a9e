"""Model contexts per mode and the original MTPB truncation rules.

multi  (the paper's multi-turn setting, byte-for-byte the original sampler):
    PREFIX, then per turn "# " + prompt + "\\n", the completion, truncate(completion) + "\\n\\n".
single (the paper's single-turn baseline): the same intent as one turn: PREFIX + "# " + the
    rendered prompts joined by single spaces + "\\n"; one completion with room for every turn
    (the sum of the problem's per-turn token budgets), truncated by the same terminals as multi
    but without the second-print and second-def cuts, since a one-turn program legitimately
    holds several functions and steps. The program is PREFIX + prompt + truncated + "\\n\\n".
"""
from __future__ import annotations

import re

PREFIX = "# Import libraries.\n\nimport numpy as np\n\n"
MODES = ("multi", "single", "chat")
TERMINALS = [re.compile(p, re.MULTILINE) for p in (r"^#", re.escape("<|endoftext|>"), r"^'''", r'^"""', r"\n\n\n")]
TOP_PRINT = re.compile(r"^print", re.MULTILINE)
TOP_DEF = re.compile(r"^def", re.MULTILINE)
# Plain stop strings for servers that only take literals (the openai backend); truncate() still
# applies the full rules to what comes back.
STOP_STRINGS = ("\n#", "<|endoftext|>", "\n'''", '\n"""', "\n\n\n")


def wrap_prompt(prompt: str) -> str:
    return f"# {prompt}\n"


def truncate(completion: str, mode: str = "multi") -> str:
    """The original sampler's truncate(): second top-level print/def cut first, then the terminals."""
    if mode == "multi":
        prints = list(TOP_PRINT.finditer(completion))
        if len(prints) > 1:
            completion = completion[:prints[1].start()]
        defs = list(TOP_DEF.finditer(completion))
        if len(defs) > 1:
            completion = completion[:defs[1].start()]
    cuts = [m.start() for m in (t.search(completion) for t in TERMINALS) if m]
    return completion[:min(cuts)] if cuts else completion


def is_finished(completion: str, mode: str = "multi") -> bool:
    """True once more text can no longer change truncate(completion): the model may stop here."""
    return truncate(completion, mode) != completion


def single_prompt(prompts: list[str]) -> str:
    return " ".join(prompts)


def single_budget(max_gen_length: int, n_turns: int) -> int:
    return max_gen_length * n_turns


FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)


def extract_code(reply: str) -> str:
    """Chat mode: the code of the reply's fenced blocks, joined; the whole reply when it has none."""
    blocks = [b.strip("\n") for b in FENCE.findall(reply)]
    return "\n".join(blocks) if blocks else reply.strip("\n")
