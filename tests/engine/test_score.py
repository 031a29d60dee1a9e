"""engine/score.py: span log-probabilities against transformers run token by token."""
from __future__ import annotations

import pytest

from tests.engine.conftest import hf_model

torch = pytest.importorskip("torch")

from mtpb.engine.load import load_engine  # noqa: E402
from mtpb.engine.score import ScoreRequest, score  # noqa: E402
from mtpb.prompts import PREFIX  # noqa: E402

TURN1 = PREFIX + "# Assign the string 'hello world' to a variable named text.\n"
TURN2 = TURN1 + "text = 'hello world'\n\n# Print the text in upper case.\n"
TURN3 = TURN2 + "print(text.upper())\n\n    # an indented comment\n"
SINGLE = PREFIX + "# Assign a list of numbers to a variable named xs. Print their sum.\n"


def token_by_token(model, tokenizer, text: str, span_start: int) -> list[float]:
    """Each span token's log-probability from transformers fed one token at a time (its own KV cache)."""
    enc = tokenizer(text, return_offsets_mapping=True)
    ids = enc["input_ids"]
    first = max(next(i for i, (a, _) in enumerate(enc["offset_mapping"]) if a >= span_start), 1)
    past, out = None, []
    with torch.no_grad():
        for i in range(len(ids) - 1):
            step = model(torch.tensor([[ids[i]]]), past_key_values=past, use_cache=True)
            past = step.past_key_values
            if i + 1 >= first:
                out.append(torch.log_softmax(step.logits[0, -1].float(), -1)[ids[i + 1]].item())
    return out


def requests(key_prefix=""):
    return [ScoreRequest(TURN1, len(PREFIX), key=key_prefix + "a"),
            ScoreRequest(SINGLE, len(PREFIX), key=key_prefix + "b"),
            ScoreRequest(TURN2, TURN2.index("# Print"), key=key_prefix + "c")]


@pytest.mark.parametrize("which", ["small_ckpt", "tiny"])
def test_span_logprobs_equal_transformers_token_by_token(which, request):
    folder = request.getfixturevalue(which)
    import transformers
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = hf_model(folder)
    engine = load_engine(folder, device="cpu", dtype="fp32", batch_size=4)
    asked = requests() + [ScoreRequest(TURN3, TURN3.index("    # an"), key="d")]
    got = score(engine, asked)
    for r, s in zip(asked, got):
        want = token_by_token(model, tokenizer, r.text, r.span_start)
        assert s.tokens == len(want) > 3
        assert s.logprobs == pytest.approx(want, rel=1e-4, abs=1e-4)


def test_turns_reuse_their_rows_and_give_the_same_numbers(small_ckpt):
    engine = load_engine(small_ckpt, device="cpu", dtype="fp32", batch_size=4)
    fresh = [score(load_engine(small_ckpt, device="cpu", dtype="fp32", batch_size=4), [r])[0]
             for r in (ScoreRequest(TURN2, TURN2.index("# Print"), "x"), ScoreRequest(TURN3, TURN3.index("    # an"), "x"))]
    first = score(engine, [ScoreRequest(TURN1, len(PREFIX), "x")])[0]
    second = score(engine, [ScoreRequest(TURN2, TURN2.index("# Print"), "x")])[0]
    third = score(engine, [ScoreRequest(TURN3, TURN3.index("    # an"), "x")])[0]
    assert first.reused_tokens == 0
    assert second.reused_tokens > first.context_tokens          # turn 1's row served turn 2
    assert third.reused_tokens > second.context_tokens
    for got, want in zip((second, third), fresh):
        assert got.logprobs == pytest.approx(want.logprobs, rel=1e-5, abs=1e-5)


def test_more_requests_than_rows_and_shared_prefixes(small_ckpt):
    engine = load_engine(small_ckpt, device="cpu", dtype="fp32", batch_size=2)
    asked = requests("p") + requests("q") + [ScoreRequest(SINGLE, len(PREFIX), key=None)]
    alone = [score(load_engine(small_ckpt, device="cpu", dtype="fp32", batch_size=1), [r])[0] for r in asked[:3]]
    got = score(engine, asked)
    for i, s in enumerate(got):
        assert s.logprobs == pytest.approx(alone[i % 3 if i < 6 else 1].logprobs, rel=1e-5, abs=1e-5)
