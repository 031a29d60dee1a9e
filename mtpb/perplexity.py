"""Prompt perplexity, multi-turn vs single-turn (the CodeGen paper's section 4 analysis).

The perplexity of the prompt tokens under a checkpoint, in each mode:
  multi   each turn's prompt ("# " + prompt + "\\n") conditioned on exactly the context the runner
          built before it: the prefix and the earlier turns with the run's own completions (as the
          paper did), or with the reference solutions when no run is given. The contexts are built
          by prompts.Conversation, the runner's own, so they equal the runner's byte for byte.
  single  the joined prompt of the single mode after the prefix (it depends on no completion, so
          one per test case).
A (problem, test, sample)'s perplexity is exp(total NLL / total prompt tokens) over its scored
turns; a problem's is the mean over its test cases and samples; a model's the mean over problems.

RUN/perplexity.jsonl (appended, resumable, one line per (problem, test, sample, mode)):
    problem_id, test_index, sample_index, mode, history ("samples" | "reference"),
    turns: [{tokens, nll}], tokens, nll, perplexity
RUN/perplexity.json: the settings (model, backend, dtype), per-problem and per-model means.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from mtpb.prompts import MULTI, SINGLE, Conversation
from mtpb.rundir import JsonlWriter, RunDir, RunDirError, chunks, load_json, now, read_jsonl, \
    write_json_atomic

JSONL_FILE, SUMMARY_FILE = "perplexity.jsonl", "perplexity.json"
SCORERS = ("codegen", "transformers")


@dataclass(frozen=True)
class Span:
    """One scored prompt: the whole context the model saw, and where the prompt begins in it."""
    text: str
    start: int


@dataclass(frozen=True)
class Dialogue:
    """The prompts of one (problem, test, sample) in one mode, as the scorer sees them."""
    problem_id: int
    test_index: int
    sample_index: int
    mode: str
    history: str            # samples | reference: whose code stands between the turns
    spans: tuple[Span, ...]

    @property
    def key(self) -> tuple:
        return (self.problem_id, self.test_index, self.sample_index, self.mode)


def prompt_spans(mode: str, prompts: list[str], replies: list[str]) -> tuple[Span, ...]:
    """The context before each turn's reply, with the turn's prompt as its span: the runner's turn
    loop replayed with `replies` (multi: one per turn, the last one unused; single: none needed)."""
    talk = Conversation(mode, prompts)
    spans = []
    for turn in range(len(talk.prompts)):
        spans.append(Span(talk.context, len(talk.program)))
        if turn + 1 < len(talk.prompts):
            talk.add(replies[turn])
    return tuple(spans)


def run_dialogues(run_dir: Path, modes: tuple[str, ...]) -> Iterator[Dialogue]:
    """Multi: one per sample of a multi-mode run, its completions between the turns; single: one per
    (problem, test), from the prompts the run's samples carry."""
    manifest = RunDir(run_dir).read_manifest() or {}
    run_mode = manifest.get("mode", "multi")
    if run_mode == "chat":
        raise RunDirError(f"{run_dir}: a chat-mode run has no text prompts to score: use a multi- or single-mode run")
    problems = _run_problems(run_dir)
    seen_single = set()
    for number, s in read_jsonl(RunDir(run_dir).samples):
        try:
            pid, test, sample = int(s["problem_id"]), int(s["test_index"]), int(s["sample_index"])
            turns = s["turns"]
            raws = [str(t["raw"]) for t in turns]
        except (KeyError, TypeError, ValueError):
            raise RunDirError(f"{run_dir}/samples.jsonl:{number}: not a sample line as mtpb run writes it "
                              "(problem_id, test_index, sample_index, turns): fix or delete that line") from None
        prompts = problems[pid].prompts(problems[pid].tests[test]) if pid in problems else None
        if prompts is None and run_mode == "multi":
            prompts = [str(t["prompt"]) for t in turns]
        if MULTI.name in modes and run_mode == "multi":
            yield Dialogue(pid, test, sample, "multi", "samples", prompt_spans("multi", prompts, raws))
        if SINGLE.name in modes and prompts is not None and (pid, test) not in seen_single:
            seen_single.add((pid, test))
            yield Dialogue(pid, test, 0, "single", "prompts", prompt_spans("single", prompts, []))


def _run_problems(run_dir: Path) -> dict:
    from mtpb.problems import problem_from_record
    out = {}
    for _, record in read_jsonl(RunDir(run_dir).problems):
        try:
            p = problem_from_record(record)
        except (KeyError, TypeError, ValueError):
            continue
        out[p.id] = p
    return out


def reference_dialogues(problems, modes: tuple[str, ...]) -> Iterator[Dialogue]:
    """One per (problem, test) and mode, the reference solutions between the multi-turn prompts."""
    for p in problems:
        for t, test in enumerate(p.tests):
            prompts, solutions = p.prompts(test), p.solutions(test)
            if MULTI.name in modes and solutions is not None:
                yield Dialogue(p.id, t, 0, "multi", "reference", prompt_spans("multi", prompts, solutions))
            if SINGLE.name in modes:
                yield Dialogue(p.id, t, 0, "single", "prompts", prompt_spans("single", prompts, []))


# ---------------------------------------------------------------------------------- scorers
class EngineScorer:
    """The bundled engine: batched prefill over the static KV cache, each dialogue's turns scored in
    order under one cache key, so a turn prefills only what the previous turn's row lacks."""

    def __init__(self, model: str, device: str | None = None, dtype: str | None = None, batch_size: int = 16):
        from mtpb.engine.load import load_engine
        self.engine = load_engine(model, device=device, dtype=dtype, batch_size=batch_size)
        self.batch_size = self.engine.max_batch
        self.dtype = str(self.engine.dtype).removeprefix("torch.")

    def score(self, dialogues: list[Dialogue]) -> list[list[tuple[int, float]]]:
        """(tokens, nll) per span of each dialogue."""
        from mtpb.engine.score import ScoreRequest, score
        out: list[list[tuple[int, float]]] = [[] for _ in dialogues]
        for turn in range(max(len(d.spans) for d in dialogues)):
            live = [i for i, d in enumerate(dialogues) if turn < len(d.spans)]
            requests = [ScoreRequest(dialogues[i].spans[turn].text, dialogues[i].spans[turn].start,
                                     key=dialogues[i].key) for i in live]
            for i, s in zip(live, score(self.engine, requests)):
                out[i].append((s.tokens, s.nll))
        return out


class TransformersScorer:
    """Hugging Face transformers, one full forward pass per context: the engine's check."""

    def __init__(self, model: str, device: str | None = None, dtype: str | None = None, batch_size: int = 16):
        import torch
        import transformers
        from mtpb.engine.load import resolve_device, resolve_dtype
        self.torch, self.device = torch, resolve_device(device)
        torch_dtype = resolve_dtype(dtype, self.device)
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(model)
        self.model = transformers.AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype).to(self.device).eval()
        self.batch_size, self.dtype = batch_size, str(torch_dtype).removeprefix("torch.")

    def score(self, dialogues: list[Dialogue]) -> list[list[tuple[int, float]]]:
        return [[self._one(s) for s in d.spans] for d in dialogues]

    def _one(self, span: Span) -> tuple[int, float]:
        torch = self.torch
        enc = self.tokenizer(span.text, return_offsets_mapping=True)
        ids = enc["input_ids"]
        first = next((i for i, (a, _) in enumerate(enc["offset_mapping"]) if a >= span.start), len(ids))
        first = max(first, 1)
        with torch.inference_mode():
            logits = self.model(torch.tensor([ids], device=self.device)).logits[0].float()   # (L, V)
        logprobs = torch.log_softmax(logits[first - 1:len(ids) - 1], dim=-1)
        targets = torch.tensor(ids[first:], device=self.device)
        nll = -logprobs.gather(-1, targets[:, None]).sum().item()
        return len(ids) - first, nll


def open_scorer(backend: str, model: str, device=None, dtype=None, batch_size: int = 16):
    if backend not in SCORERS:
        raise ValueError(f"unknown perplexity backend {backend!r}: one of {', '.join(SCORERS)}")
    cls = EngineScorer if backend == "codegen" else TransformersScorer
    return cls(model, device=device, dtype=dtype, batch_size=batch_size)


# ---------------------------------------------------------------------------------- the files
def dialogue_record(d: Dialogue, scores: list[tuple[int, float]]) -> dict:
    tokens, nll = sum(n for n, _ in scores), sum(x for _, x in scores)
    return {"problem_id": d.problem_id, "test_index": d.test_index, "sample_index": d.sample_index,
            "mode": d.mode, "history": d.history,
            "turns": [{"tokens": n, "nll": round(x, 6)} for n, x in scores],
            "tokens": tokens, "nll": round(nll, 6),
            "perplexity": round(math.exp(nll / tokens), 6) if tokens else None}


def _record_key(r: dict) -> tuple:
    return (int(r["problem_id"]), int(r["test_index"]), int(r["sample_index"]), str(r["mode"]))


def summarize(records: Iterable[dict]) -> dict:
    """Per problem and mode the mean perplexity over its dialogues; per mode the mean over problems."""
    per: dict[str, dict[int, list[float]]] = {}
    tokens: dict[str, int] = {}
    for r in records:
        if r.get("perplexity") is None:
            continue
        per.setdefault(r["mode"], {}).setdefault(int(r["problem_id"]), []).append(float(r["perplexity"]))
        tokens[r["mode"]] = tokens.get(r["mode"], 0) + int(r["tokens"])
    problems: dict[str, dict[str, float]] = {}
    modes = {}
    for mode, by_problem in sorted(per.items()):
        means = {pid: sum(v) / len(v) for pid, v in by_problem.items()}
        for pid, mean in sorted(means.items()):
            problems.setdefault(str(pid), {})[mode] = round(mean, 4)
        modes[mode] = {"perplexity": round(sum(means.values()) / len(means), 4), "n_problems": len(means),
                       "n_dialogues": sum(map(len, by_problem.values())), "tokens": tokens[mode]}
    return {"modes": modes, "problems": dict(sorted(problems.items(), key=lambda kv: int(kv[0])))}


def write_perplexity(out_dir: Path, dialogues: Iterable[Dialogue], scorer, settings: dict,
                     progress=None) -> dict:
    """Score what perplexity.jsonl lacks, append it, and rewrite perplexity.json. Settings that
    differ from those of a perplexity.json already there are refused (their lines would mix)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jsonl, summary_path = out_dir / JSONL_FILE, out_dir / SUMMARY_FILE
    if summary_path.exists():
        old = load_json(summary_path).get("settings", {})
        for key in ("model", "backend", "dtype"):
            if old.get(key) != settings.get(key):
                raise RunDirError(f"{summary_path} holds perplexities with {key}={old.get(key)!r}, not "
                                  f"{settings.get(key)!r}: rerun with the same settings, or give another --out")
    done = {_record_key(r) for _, r in read_jsonl(jsonl)} if jsonl.exists() else set()
    started = now()
    write_json_atomic(summary_path, {"settings": settings, "started": started, "finished": None})
    todo = [d for d in dialogues if d.key not in done]
    if progress:
        progress.start(len(todo) + len(done), len(done))
    writer = JsonlWriter(jsonl)
    try:
        for batch in chunks(todo, scorer.batch_size):
            for d, scores in zip(batch, scorer.score(batch)):
                writer.write(dialogue_record(d, scores))
            writer.checkpoint()
            if progress:
                progress.advance(len(batch))
    finally:
        writer.close()
    summary = {"settings": settings, "started": started, "finished": now(),
               **summarize(r for _, r in read_jsonl(jsonl))}
    write_json_atomic(summary_path, summary)
    return summary


def read_perplexity(run_dir: Path) -> dict | None:
    """RUN/perplexity.json when a finished `mtpb perplexity` wrote one, else None."""
    path = Path(run_dir) / SUMMARY_FILE
    if not path.exists():
        return None
    data = load_json(path)
    return data if data.get("finished") and isinstance(data.get("modes"), dict) else None
