"""Generation: greedy equal to transformers', prefix reuse, per-sequence stop, seeds, bounded memory."""
from __future__ import annotations

import pytest
import torch

from mtpb.engine.generate import Engine, GenerationRequest
from mtpb.engine.load import load_model

from .conftest import hf_model

PROMPTS = [
    "# Import libraries.\n\nimport numpy as np\n\n# Assign the list [1, 2, 3] to a variable named \"xs\".\n",
    "def add(a, b):\n    ",
    "import os\n\n\nclass Config:\n    \"\"\"Settings.\"\"\"\n\n    def __init__(self, path):\n",
    "x",
]


@pytest.fixture(scope="module")
def small(small_ckpt):
    return load_model(small_ckpt, "cpu", "fp32"), hf_model(small_ckpt)


def hf_greedy(hf, tok, prompt: str, n: int) -> tuple[int, ...]:
    ids = torch.tensor([tok.encode(prompt)])
    out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
                      pad_token_id=tok.eos_id, eos_token_id=tok.eos_id)[0, ids.shape[1]:].tolist()
    return tuple(out[:out.index(tok.eos_id) + 1] if tok.eos_id in out else out)


def test_greedy_equals_transformers_single_and_batched(small):
    (net, tok), hf = small
    want = [hf_greedy(hf, tok, p, 24) for p in PROMPTS]
    engine = Engine(net, tok, max_batch=8)
    alone = [engine.generate([GenerationRequest(p, 24)])[0].token_ids for p in PROMPTS]
    batched = [c.token_ids for c in Engine(net, tok, max_batch=8).generate([GenerationRequest(p, 24) for p in PROMPTS])]
    assert alone == want
    assert batched == want


def test_greedy_equals_transformers_on_tiny(tiny):
    net, tok = load_model(tiny, "cpu", "fp32")
    hf = hf_model(tiny)
    engine = Engine(net, tok, max_batch=4)
    got = engine.generate([GenerationRequest(p, 32) for p in PROMPTS])
    assert [c.token_ids for c in got] == [hf_greedy(hf, tok, p, 32) for p in PROMPTS]
    assert all(c.text == tok.decode(list(c.token_ids)) for c in got)


def test_prefix_reuse_across_turns_gives_the_same_tokens(small):
    (net, tok), hf = small
    engine = Engine(net, tok, max_batch=4)
    first = engine.generate([GenerationRequest(p, 12, key=i) for i, p in enumerate(PROMPTS)])
    second = [GenerationRequest(p + c.text + "\n\n# Next step.\n", 12, key=i)
              for i, (p, c) in enumerate(zip(PROMPTS, first))]
    reused = engine.generate(second)
    fresh = Engine(net, tok, max_batch=4).generate(second)
    assert [c.token_ids for c in reused] == [c.token_ids for c in fresh]
    assert [c.token_ids for c in reused] == [hf_greedy(hf, tok, r.prompt, 12) for r in second]
    assert all(c.reused_tokens > 0 for c in reused)
    assert all(c.reused_tokens == 0 for c in fresh)


def test_prefix_reuse_survives_reordered_batches(small):
    (net, tok), _ = small
    engine = Engine(net, tok, max_batch=4)
    first = engine.generate([GenerationRequest(p, 8, key=i) for i, p in enumerate(PROMPTS)])
    second = [GenerationRequest(p + c.text + "\n# more\n", 8, key=i) for i, (p, c) in enumerate(zip(PROMPTS, first))]
    order = [2, 0, 3, 1]
    got = engine.generate([second[i] for i in order])
    want = Engine(net, tok, max_batch=4).generate([second[i] for i in order])
    assert [c.token_ids for c in got] == [c.token_ids for c in want]
    assert sum(c.reused_tokens for c in got) > 0


def test_samples_share_their_prompt_and_seeds_make_them_reproducible(small):
    (net, tok), _ = small
    prompt = PROMPTS[2]
    reqs = [GenerationRequest(prompt, 16, seed=s, temperature=0.8, top_p=0.95, key=("p", s)) for s in range(4)]
    out = Engine(net, tok, max_batch=4).generate(reqs)
    n = len(tok.encode(prompt))
    assert sorted(c.reused_tokens for c in out) == [0, n - 1, n - 1, n - 1]   # one prefill, three copies
    again = Engine(net, tok, max_batch=4).generate(reqs)
    assert [c.text for c in out] == [c.text for c in again]
    assert len({c.text for c in out}) > 1, "different seeds should give different samples"
    # a request's sample does not depend on which other requests share its batch
    alone = [Engine(net, tok, max_batch=4).generate([r])[0].text for r in reqs]
    mixed = Engine(net, tok, max_batch=4).generate([GenerationRequest(PROMPTS[0], 16, seed=9, temperature=0.8)] + reqs[::-1])
    assert alone == [c.text for c in out] == [c.text for c in mixed[1:]][::-1]


def test_each_sequence_stops_on_its_own(small):
    (net, tok), _ = small
    engine = Engine(net, tok, max_batch=4)
    reqs = [GenerationRequest(p, 30) for p in PROMPTS]
    full = engine.generate(reqs)
    stopped = engine.generate(reqs, is_finished=lambda text: len(text) >= 5)
    for f, s in zip(full, stopped):
        assert f.token_ids[:len(s.token_ids)] == s.token_ids
        if s.finish == "stop":
            assert len(s.text) >= 5 and len(tok.decode(list(s.token_ids[:-1]))) < 5
    assert engine.stats.decode_steps > 0


def test_more_requests_than_rows_and_memory_stays_bounded(small):
    (net, tok), _ = small
    reqs = [GenerationRequest(PROMPTS[i % 4] + "#" * (i % 3), 6, key=i) for i in range(11)]
    big = Engine(net, tok, max_batch=16).generate(reqs)
    engine = Engine(net, tok, max_batch=3)
    for _ in range(3):
        got = engine.generate(reqs)
        assert [c.token_ids for c in got] == [c.token_ids for c in big]
    assert engine.pool.rows <= 3 and len(engine.pool.kv[0]) <= 3


def test_edge_cases(small):
    (net, tok), _ = small
    engine = Engine(net, tok, max_batch=2, max_length=64)
    out = engine.generate([GenerationRequest("x = 1\n", 0), GenerationRequest("y" * 400, 10), GenerationRequest("", 3)])
    assert out[0].text == "" and out[0].finish == "length"
    assert out[1].prompt_tokens <= 64 - 10 and len(out[1].token_ids) <= 10
    assert len(out[2].token_ids) >= 1


def test_static_buffer_decode_equals_eager(small):
    """The CUDA-graph step's logic (row/key buckets, padding rows, on-device argmax and positions),
    run eagerly here: same tokens as the plain eager step, with stops, compaction and sampling."""
    (net, tok), _ = small
    reqs = [GenerationRequest(p * (1 + i % 2), 20 + 3 * i, seed=i, temperature=0.7 * (i % 2), key=i)
            for i, p in enumerate(PROMPTS * 2)]
    stop = lambda text: len(text) >= 15
    eager, static = Engine(net, tok, max_batch=8), Engine(net, tok, max_batch=8, decode="static")
    finishes = set()
    for _ in range(2):   # second round reuses rows in a new order
        a, b = eager.generate(reqs, stop), static.generate(reqs, stop)
        assert [c.token_ids for c in a] == [c.token_ids for c in b]
        finishes |= {c.finish for c in a}
        reqs = [GenerationRequest(r.prompt + c.text + "\n# go on\n", 12, seed=r.seed, temperature=r.temperature, key=r.key)
                for r, c in zip(reqs[::-1], a[::-1])]
    assert "stop" in finishes


def module_attributes(net) -> dict:
    """Every attribute of every module of a model, by identity: what an engine must never change."""
    return {(name, key): id(value) for name, module in net.named_modules() for key, value in vars(module).items()}


def test_engines_sharing_a_model_give_what_one_alone_gives(small):
    """serve's replicas: engines over one model with different batch sizes, each built before the other
    runs, give the greedy tokens of one engine alone, in turns, and leave the shared model as it was
    (an engine once packed the shared model for its own batch size, undoing the other one's packing)."""
    (net, tok), _ = small
    reqs = [GenerationRequest(p, 16, key=i) for i, p in enumerate(PROMPTS)]
    alone = [c.token_ids for c in Engine(net, tok, max_batch=4).generate(reqs)]
    before = module_attributes(net)
    first, second = Engine(net, tok, max_batch=4), Engine(net, tok, max_batch=2)
    assert module_attributes(net) == before
    for _ in range(2):
        assert [c.token_ids for c in first.generate(reqs)] == alone
        assert [c.token_ids for c in second.generate(reqs)] == alone
    assert module_attributes(net) == before


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: this machine has none")
def test_cuda_graph_decode_equals_eager(small_ckpt):
    """The decode step replayed from CUDA graphs gives the eager step's tokens: greedy and sampled
    rows, per-row stops, compaction, and a second round that reuses rows in a new order."""
    net, tok = load_model(small_ckpt, "cuda", "fp32")
    reqs = [GenerationRequest(p * (1 + i % 2), 20 + 3 * i, seed=i, temperature=0.7 * (i % 2), key=i)
            for i, p in enumerate(PROMPTS * 2)]
    stop = lambda text: len(text) >= 15
    eager, graphs = Engine(net, tok, max_batch=8, decode="eager"), Engine(net, tok, max_batch=8, decode="graphs")
    for _ in range(2):
        a, b = eager.generate(reqs, stop), graphs.generate(reqs, stop)
        assert [c.token_ids for c in a] == [c.token_ids for c in b]
        reqs = [GenerationRequest(r.prompt + c.text + "\n# go on\n", 12, seed=r.seed, temperature=r.temperature, key=r.key)
                for r, c in zip(reqs[::-1], a[::-1])]
    assert eager.static is None
    assert any(s.graph is not None for s in graphs.static.statics.values())   # graphs were captured and replayed
