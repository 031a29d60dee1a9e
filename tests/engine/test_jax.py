"""The JAX runtime against transformers and the torch engine: logits, greedy programs, sampling,
compilation per shape bucket, sharded = unsharded on 8 virtual CPU devices, options and errors."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from mtpb.backends.base import BackendError, SamplingParams
from mtpb.backends.registry import create_backend

from .conftest import ROOT, SHAPE_350M, copy_tokenizer, hf_model, random_model
from .test_engine_backends import run_turns

jax = pytest.importorskip("jax")
torch = pytest.importorskip("torch")

from mtpb.engine.jax.load import load_engine, load_model  # noqa: E402
from mtpb.engine.jax.model import logits  # noqa: E402
from mtpb.engine.requests import GenerationRequest  # noqa: E402

TEXT = "def add(a, b):\n    return a + b\n\n\nclass Config:\n    \"\"\"Settings.\"\"\"\n    x = [1, 2, 3]\n"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_engine", ROOT / "bench" / "engine.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hf_logits(model, ids: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor(ids)).logits.float().numpy()


def test_logits_equal_transformers_on_tiny(tiny):
    params, cfg, tok = load_model(tiny, "fp32")
    ids = np.array([tok.encode(TEXT), tok.encode(TEXT[::-1])[:len(tok.encode(TEXT))]])
    diff = np.abs(np.asarray(logits(params, cfg, ids)) - hf_logits(hf_model(tiny), ids)).max()
    print(f"tiny fp32 max abs logit difference: {diff:.2e}")
    assert diff <= 1e-4


@pytest.mark.slow
def test_logits_equal_transformers_at_the_350M_shape(tmp_path):
    model = random_model(SHAPE_350M, seed=3)
    model.save_pretrained(tmp_path)
    ids = np.random.default_rng(0).integers(0, SHAPE_350M["vocab_size"], (1, 24))
    want = hf_logits(model, ids)
    del model
    copy_tokenizer(tmp_path)
    params, cfg, _ = load_model(tmp_path, "fp32")
    diff = np.abs(np.asarray(logits(params, cfg, ids)) - want).max()
    print(f"350M-shape fp32 max abs logit difference: {diff:.2e}")
    assert diff <= 1e-4


def test_half_precision_loads_and_stays_close(tiny):
    full, cfg, tok = load_model(tiny, "fp32")
    ids = np.array([tok.encode(TEXT)])
    want = np.asarray(logits(full, cfg, ids))
    for dtype in ("bf16", "fp16"):
        params, _, _ = load_model(tiny, dtype)
        assert params["qkv"].dtype == jax.numpy.dtype(dtype.replace("bf", "bfloat").replace("fp", "float"))
        got = np.asarray(logits(params, cfg, ids))
        assert (got.argmax(-1) == want.argmax(-1)).mean() > 0.9
        assert np.abs(got - want).max() < 0.5


def test_bin_checkpoints_load_through_torch_and_without_it_say_how_to_convert(tmp_path, small_bin, monkeypatch):
    params, cfg, tok = load_model(small_bin, "fp32")
    ids = np.array([tok.encode(TEXT)])
    assert np.abs(np.asarray(logits(params, cfg, ids)) - hf_logits(hf_model(small_bin), ids)).max() <= 1e-4
    monkeypatch.setitem(sys.modules, "torch", None)       # import torch now fails
    with pytest.raises(ValueError, match="convert the checkpoint to safetensors"):
        load_model(small_bin, "fp32")


@pytest.mark.slow
def test_greedy_programs_equal_transformers(tiny):
    """The multi-turn loop of test_engine_backends (which holds the torch engine to the same
    programs); the torch engine itself is compared turn by turn in the next test."""
    params = SamplingParams(temperature=0.0)
    options = {"device": "cpu", "batch_size": "4"}
    ours = create_backend("codegen", str(tiny), {**options, "runtime": "jax"})
    assert ours.describe()["runtime"] == "jax"
    programs = run_turns(ours, params, max_tokens=32)
    baseline = create_backend("transformers", str(tiny), {**options, "dtype": "fp32"})
    assert programs == run_turns(baseline, params, max_tokens=32)


def test_turns_equal_the_torch_engines_with_the_same_prefix_reuse(small_ckpt):
    from mtpb.engine.load import load_engine as torch_engine
    prompts = ["# Import libraries.\n\nimport numpy as np\n", "def add(a, b):\n    ", TEXT, "x"]
    ours, theirs = load_engine(small_ckpt, batch_size=4), torch_engine(small_ckpt, batch_size=4)
    for turn in range(2):
        reqs = [GenerationRequest(p, 12, key=i) for i, p in enumerate(prompts)]
        got, want = ours.generate(reqs), theirs.generate(reqs)
        assert [c.token_ids for c in got] == [c.token_ids for c in want]
        assert [c.reused_tokens for c in got] == [c.reused_tokens for c in want]
        prompts = [p + c.text + "\n# next\n" for p, c in zip(prompts, got)]
    assert sum(c.reused_tokens for c in got) > 0


def test_sampled_tokens_follow_the_torch_engines_distribution(tiny):
    from mtpb.engine.load import load_engine as torch_engine
    n = 160
    reqs = [GenerationRequest("# Print the sum of", 1, seed=s, temperature=1.0, top_p=0.95, key=s) for s in range(n)]
    ours = [c.token_ids[0] for c in load_engine(tiny, batch_size=16).generate(reqs)]
    theirs = [c.token_ids[0] for c in torch_engine(tiny, batch_size=16).generate(reqs)]
    assert len(set(ours)) > 5                      # really sampled, not greedy
    vocab = sorted(set(ours) | set(theirs))
    p = np.array([ours.count(t) for t in vocab]) / n
    q = np.array([theirs.count(t) for t in vocab]) / n
    assert 0.5 * np.abs(p - q).sum() < 0.1         # total variation; same warpers and uniforms: near 0
    again = [c.token_ids[0] for c in load_engine(tiny, batch_size=8).generate(reqs)]
    assert again == ours                           # seeds, not batch composition, decide


@pytest.mark.slow
def test_twenty_problems_compile_decode_once_per_shape_bucket(tiny):
    bench = load_bench()
    run_workload, workload_items = bench.run_workload, bench.workload_items
    # 20 problems, the first test of each, 16 tokens a turn (the tiny model rarely stops by itself)
    items = [(key, turns, 16) for key, turns, _ in workload_items(20, 1) if key[1] == 0]
    assert len(items) == 20
    backend = create_backend("codegen", str(tiny), {"device": "cpu", "batch_size": "4", "max_length": "512",
                                                    "runtime": "jax"})
    engine = backend.engine
    sizes = engine.decode_fn._cache_size(), engine.prefill_fn._cache_size()
    compiled = []
    listener = lambda event, seconds, **kw: compiled.append(event) if "backend_compile" in event else None  # noqa: E731
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        run_workload(backend, items, SamplingParams(temperature=0.0), 4)
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    decode_buckets = engine.buckets["decode"]   # this engine's; the jit caches are shared per model shape
    print(f"decode steps {engine.stats.decode_steps}, decode buckets {len(decode_buckets)}, "
          f"prefill buckets {len(engine.buckets['prefill'])}, backend compiles {len(compiled)}")
    assert engine.decode_fn._cache_size() - sizes[0] <= len(decode_buckets)
    assert engine.prefill_fn._cache_size() - sizes[1] <= len(engine.buckets["prefill"])
    assert engine.stats.decode_steps > 10 * len(decode_buckets)
    assert len(compiled) <= len(decode_buckets) + len(engine.buckets["prefill"]) + 12   # + sampling, moves, slices


@pytest.mark.slow
def test_sharded_equals_unsharded_on_8_virtual_devices(tiny):
    meshes = ["1x1", "1x8", "8x1", "2x4"]
    out = subprocess.run([sys.executable, str(ROOT / "tests" / "engine" / "jax_mesh.py"), str(tiny), *meshes],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.splitlines()[-1])
    base = got["1x1"]
    assert base["reused"] > 0
    for mesh in meshes[1:]:
        diff = np.abs(np.array(got[mesh]["logits"]) - np.array(base["logits"])).max()
        print(f"mesh {mesh}: max abs logit difference {diff:.2e}, shards qkv {got[mesh]['qkv_shard']} "
              f"cache {got[mesh]['cache_shard']}")
        assert diff <= 1e-5
        assert got[mesh]["turns"] == base["turns"]
    H = 8   # tiny's heads: split by the model axis, cache rows by the data axis
    assert got["1x8"]["qkv_shard"][3] == H // 8 and got["1x8"]["cache_shard"][4] == H // 8
    assert got["8x1"]["cache_shard"][1] == 1 and got["2x4"]["cache_shard"][1:5:3] == [4, 2]


@pytest.mark.parametrize("options, message", [
    ({"runtime": "tensorflow"}, "-B runtime=tensorflow: use torch or jax"),
    ({"mesh": "2x4"}, "-B mesh=2x4: is an option of the JAX runtime"),
    ({"runtime": "jax", "mesh": "3x3"}, "-B mesh=3x3: DATAxMODEL must multiply to at most the 1 devices"),
    ({"runtime": "jax", "mesh": "big"}, "-B mesh=big: write the mesh as DATAxMODEL"),
    ({"runtime": "jax", "device": "tpu"}, "-B device=tpu: no such JAX platform"),
    ({"runtime": "jax", "dtype": "int4"}, "-B dtype=int4"),
    ({"runtime": "jax", "decode": "graphs"}, "-B decode=graphs: is an option of the torch runtime"),
])
def test_bad_jax_options_are_backend_errors(tiny, options, message):
    with pytest.raises(BackendError, match=message.replace("(", r"\(")):
        create_backend("codegen", str(tiny), options)


def test_serve_runs_the_jax_runtime(tiny):
    import http.client

    from mtpb.serve import start_server
    with start_server(str(tiny), port=0, batch_size=2, device="cpu", runtime="jax",
                      served_model_name="tiny").start() as server:
        assert server.info["runtime"] == "jax"
        host, port = server.httpd.server_address[:2]
        conn = http.client.HTTPConnection(host, port, timeout=120)
        body = {"model": "tiny", "prompt": "def add(a, b):\n", "max_tokens": 8, "temperature": 0}
        conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
        reply = json.loads(conn.getresponse().read())
    want = create_backend("codegen", str(tiny), {"device": "cpu"}).engine.generate(
        [GenerationRequest("def add(a, b):\n", 8)])[0].text
    assert reply["choices"][0]["text"] == want, reply


def test_mtpb_without_the_jax_runtime_never_imports_jax_and_without_jax_says_how(tiny):
    code = ("import sys\nfrom mtpb.backends.registry import create_backend\n"
            f"create_backend('codegen', {str(tiny)!r}, {{'device': 'cpu'}})\n"
            "assert 'jax' not in sys.modules, 'jax imported by the torch runtime'\n"
            "sys.modules['jax'] = None\n"
            "from mtpb.backends.base import BackendError\n"
            "try:\n"
            f"    create_backend('codegen', {str(tiny)!r}, {{'runtime': 'jax'}})\n"
            "except BackendError as e:\n"
            "    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert "-B runtime=jax: needs JAX, which is not installed" in out.stdout
    assert "pip install 'mtpb[jax]'" in out.stdout
