"""Model contexts per mode and the original MTPB truncation rules: the one place a turn's context is built.

multi  (the paper's multi-turn setting, byte-for-byte the original sampler):
    PREFIX, then per turn "# " + prompt + "\\n", the completion, truncate(completion) + "\\n\\n".
single (the paper's single-turn baseline): the same intent as one turn: PREFIX + "# " + the
    rendered prompts joined by single spaces + "\\n"; one completion with room for every turn
    (the sum of the problem's per-turn token budgets), truncated by the same terminals as multi
    but without the second-print and second-def cuts, since a one-turn program legitimately
    holds several functions and steps. The program is PREFIX + prompt + truncated + "\\n\\n".
    The reference solution of that one turn is the turns' solutions joined by newlines.
chat   (chat models behind an API): each prompt is a user message, each reply an assistant message;
    the code of the reply's fenced blocks (extract_code) is the turn's code. The program is PREFIX,
    then per turn code + "\\n\\n": the prompts were messages, not comments, so it holds none.
    The reference solution is offered in a ```python fence, as a chat model would answer.
complete (problems of the check kind, HumanEval's protocol as in the Codex and CodeGen papers): the
    prompt as-is is the context, no prefix; the completion is cut at the first Codex stop sequence
    (CODEX_STOPS) or <|endoftext|>. The executed program is built from it by mtpb.humaneval.program.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "# Import libraries.\n\nimport numpy as np\n\n"
TERMINALS = [re.compile(p, re.MULTILINE) for p in (r"^#", re.escape("<|endoftext|>"), r"^'''", r'^"""', r"\n\n\n")]
TOP_PRINT = re.compile(r"^print", re.MULTILINE)
TOP_DEF = re.compile(r"^def", re.MULTILINE)
# Plain stop strings for servers that only take literals (the openai backend); truncate() still
# applies the full rules to what comes back.
STOP_STRINGS = ("\n#", "<|endoftext|>", "\n'''", '\n"""', "\n\n\n")
EOS = "<|endoftext|>"
# The Codex paper's stop sequences for HumanEval (also the CodeGen paper's): mode `complete`.
CODEX_STOPS = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")


def stop_strings(mode: str) -> tuple[str, ...]:
    """The literal stop strings of a mode, for servers that take only literals."""
    return (*CODEX_STOPS, EOS) if mode == "complete" else STOP_STRINGS


def wrap_prompt(prompt: str) -> str:
    return f"# {prompt}\n"


def truncate(completion: str, mode: str = "multi") -> str:
    """The original sampler's truncate(): second top-level print/def cut first, then the terminals.
    Mode `complete`: the text before the first Codex stop sequence or eos."""
    if mode == "complete":
        cuts = [i for i in (completion.find(s) for s in (*CODEX_STOPS, EOS)) if i >= 0]
        return completion[:min(cuts)] if cuts else completion
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
    """The stop rule: True once more text can no longer change truncate(completion), so the model may stop."""
    return truncate(completion, mode) != completion


FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)


def extract_code(reply: str) -> str:
    """Chat mode: the code of the reply's fenced blocks, joined; the whole reply when it has none."""
    blocks = [b.strip("\n") for b in FENCE.findall(reply)]
    return "\n".join(blocks) if blocks else reply.strip("\n")


@dataclass(frozen=True)
class Mode:
    """What a mode changes in the turn loop (see the module docstring); the name is what run.json and
    SamplingParams.mode carry, and what truncate() and is_finished() key their rule on."""
    name: str
    one_turn: bool = False   # single: the whole intent is one prompt
    chat: bool = False       # chat: prompts go as messages, code comes back in a fence
    as_is: bool = False      # complete: the prompt is the whole context, with no prefix and no comment

    @property
    def prefix(self) -> str:
        return "" if self.as_is else PREFIX

    def comment(self, prompt: str) -> str:
        """The prompt as it stands in the text context; a chat model gets it as a message instead."""
        return "" if self.chat else prompt if self.as_is else wrap_prompt(prompt)

    def code(self, raw: str) -> str:
        """The part of a reply the program keeps."""
        return extract_code(raw) if self.chat else truncate(raw, self.name)

    def answer(self, solution: str) -> str:
        """A reference solution as this mode's model would reply it (what the reference backend plays)."""
        return f"```python\n{solution}\n```" if self.chat else solution


MULTI, SINGLE, CHAT = Mode("multi"), Mode("single", one_turn=True), Mode("chat", chat=True)
MODES = (MULTI.name, SINGLE.name, CHAT.name)   # MTPB's
COMPLETE = Mode("complete", as_is=True)         # HumanEval's (problems of the check kind)


def mode_named(name: str) -> Mode:
    for mode in (MULTI, SINGLE, CHAT, COMPLETE):
        if mode.name == name:
            return mode
    raise ValueError(f"unknown mode {name!r}: one of {', '.join(MODES)}")


class Conversation:
    """One (problem, test, sample) in a mode: what each turn asks the model, and the program the replies build.

    Ask `context` (and `messages` in chat mode, `max_tokens`, `solution`) for the next turn, hand the
    reply to add(); when `done`, `program` is the program to execute and `turns` the samples.jsonl records.
    """

    def __init__(self, mode: Mode | str, prompts: list[str], solutions: list[str] | None = None,
                 max_gen_length: int = 128):
        self.mode = mode if isinstance(mode, Mode) else mode_named(mode)
        if self.mode.one_turn:
            max_gen_length *= len(prompts)   # room for every turn's code in the one completion
            prompts = [" ".join(prompts)]
            solutions = None if solutions is None else ["\n".join(solutions)]
        self.prompts, self.solutions, self.max_tokens = list(prompts), solutions, max_gen_length
        self.program = self.mode.prefix         # the history so far: after the last turn, the program
        self.turns: list[dict] = []             # {prompt, raw, completion} per turn answered
        self._messages: list[dict] = []         # chat mode: the user and assistant messages so far

    @property
    def turn_index(self) -> int:
        return len(self.turns)

    @property
    def done(self) -> bool:
        return len(self.turns) == len(self.prompts)

    @property
    def context(self) -> str:
        """The text the model continues for the next turn (chat mode: the program so far)."""
        return self.program + self.mode.comment(self.prompts[self.turn_index])

    @property
    def messages(self) -> tuple[dict, ...]:
        """Chat mode: the conversation so far, ending with the next turn's user message; () otherwise."""
        if not self.mode.chat:
            return ()
        return (*self._messages, {"role": "user", "content": self.prompts[self.turn_index]})

    @property
    def solution(self) -> str | None:
        """The next turn's reference solution as a reply, or None when the problem has none."""
        return None if self.solutions is None else self.mode.answer(self.solutions[self.turn_index])

    def add(self, raw: str) -> str:
        """Take the model's reply to the next turn; returns the code the program keeps of it."""
        prompt, context, code = self.prompts[self.turn_index], self.context, self.mode.code(raw)
        if self.mode.chat:
            self._messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": raw}]
        self.program = context + code + "\n\n"
        self.turns.append({"prompt": prompt, "raw": raw, "completion": code})
        return code


def served_chat_context(messages: list[tuple[str, str]]) -> str:
    """`mtpb serve` answering chat on a base model: the (role, text) user and assistant messages as the
    multi-mode context the model continues. Every line of a user message becomes a comment (trailing
    blanks dropped), every assistant message the code of its fences and a blank line: a one-line
    prompt then reads exactly as in a multi-mode Conversation."""
    context = PREFIX
    for role, text in messages:
        if role == "user":
            context += "".join(wrap_prompt(line).rstrip(" \n") + "\n" for line in text.splitlines() or [""])
        else:
            context += extract_code(text) + "\n\n"
    return context
