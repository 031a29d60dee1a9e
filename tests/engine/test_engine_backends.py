"""The codegen and transformers backends on the tiny checkpoint: same greedy programs, clear errors."""
from __future__ import annotations

import pytest

from mtpb.backends.base import BackendError, Request, SamplingParams
from mtpb.backends.registry import create_backend
from mtpb.prompts import Conversation

TURNS = [
    ["Assign the string \"hello world\" to a variable named \"text\".", "Split \"text\" into words.",
     "Print the number of words."],
    ["Define a function \"square\" that returns its argument squared.", "Print square(7)."],
    ["Create a list named \"xs\" with the numbers 1 to 5.", "Compute the sum of \"xs\".",
     "Compute the mean of \"xs\".", "Print the mean."],
]


def run_turns(backend, params: SamplingParams, n: int = 1, max_tokens: int = 48) -> list[str]:
    """The runner's loop in miniature: one generate call per turn index over every live item."""
    items = [(p, s) for p in range(len(TURNS)) for s in range(n)]
    talks = {it: Conversation(params.mode, TURNS[it[0]], max_gen_length=max_tokens) for it in items}
    while live := [it for it in items if not talks[it].done]:
        reqs = [Request(talks[it].context, talks[it].max_tokens, seed=1000 * it[0] + it[1], problem_id=it[0],
                        sample_index=it[1], turn_index=talks[it].turn_index) for it in live]
        for it, raw in zip(live, backend.generate(reqs, params)):
            talks[it].add(raw)
    return [talks[it].program for it in items]


@pytest.fixture(scope="module")
def codegen(tiny):
    return create_backend("codegen", str(tiny), {"device": "cpu", "batch_size": "4"})


def test_codegen_describe_and_options(codegen, tiny):
    info = codegen.describe()
    assert info["model"] == str(tiny) and info["parameters"] > 1_000_000
    assert info["dtype"] == "float32" and info["device"] == "cpu"
    assert codegen.preferred_batch_size == 4
    assert codegen.engine.static is None   # eager decode on cpu, also when asked for by name
    assert create_backend("codegen", str(tiny), {"device": "cpu", "decode": "eager"}).engine.static is None


def test_codegen_and_transformers_write_the_same_greedy_programs(codegen, tiny):
    baseline = create_backend("transformers", str(tiny), {"device": "cpu", "dtype": "fp32", "batch_size": "3"})
    params = SamplingParams(temperature=0.0)
    assert run_turns(codegen, params) == run_turns(baseline, params)
    assert baseline.describe()["parameters"] == codegen.describe()["parameters"]


def test_codegen_sampling_is_reproducible(codegen, tiny):
    params = SamplingParams(temperature=0.8, top_p=0.95)
    first = run_turns(codegen, params, n=2)
    again = run_turns(create_backend("codegen", str(tiny), {"device": "cpu", "batch_size": "6"}), params, n=2)
    assert first == again


def test_codegen_stops_exactly_when_the_truncated_text_is_final(codegen):
    from mtpb.engine.generate import GenerationRequest
    from mtpb.prompts import is_finished
    tok = codegen.engine.tokenizer
    contexts = [Conversation("multi", t).context for t in TURNS + [["Print the sum of 1 and 2."]]]
    done = codegen.engine.generate([GenerationRequest(c, 128) for c in contexts], lambda t: is_finished(t, "multi"))
    for c in done:
        before_last = tok.decode(list(c.token_ids[:-1]))
        assert not is_finished(before_last, "multi")            # never ran past a final text
        if c.finish == "stop":
            assert is_finished(c.text, "multi")
        else:
            assert c.finish in ("eos", "length")
    raws = codegen.generate([Request(c, 128, seed=0) for c in contexts], SamplingParams())
    assert raws == [c.text for c in done]


@pytest.mark.parametrize("options, message", [
    ({"batch_size": "many"}, "batch_size"),
    ({"dtype": "int4"}, "dtype"),
    ({"device": "cuda:7"} , "device"),
    ({"top_k": "-1"}, "top_k"),
    ({"decode": "fast"}, "decode=fast"),
    ({"device": "cpu", "decode": "graphs"}, "needs a CUDA device"),
])
def test_codegen_bad_options_are_backend_errors(tiny, options, message):
    import torch
    if options.get("device") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has that device")
    with pytest.raises(BackendError, match=message):
        create_backend("codegen", str(tiny), options)


def test_missing_model_folders_are_backend_errors(tmp_path):
    with pytest.raises(BackendError, match="cannot load"):
        create_backend("codegen", str(tmp_path / "missing"), {"device": "cpu"})
    with pytest.raises(BackendError):
        create_backend("transformers", None, {})
    with pytest.raises(BackendError, match="no option"):
        create_backend("codegen", None, {"colour": "red"})


def test_chat_mode_is_refused(codegen):
    with pytest.raises(BackendError, match="mode"):
        codegen.generate([Request("x", 4, seed=0)], SamplingParams(mode="chat"))
