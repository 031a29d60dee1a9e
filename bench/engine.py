"""The bundled engine against the transformers baseline, side by side in one run.

    python bench/engine.py workload [--model checkpoints/tiny-codegen] [--problems 8] [--n 1] [--runtimes torch,jax]
    python bench/engine.py decode [--shape 350M] [--tokens 64] [--batches 1,16]
    python bench/engine.py jax-decode [--shape 350M] [--tokens 128] [--batches 1,32] [--device tpu]

workload: the multi-turn workload (the suite's problems x 5 tests x n samples, turn by turn as the
runner does it: one generate call per turn index over a batch of items), greedy, with the same
checkpoint through both backends. Checks the programs are identical and prints wall time, tokens/s
and the ratio. On CPU a fixed subset (--problems, default 8) keeps it short. --runtimes runs the
engine's torch and/or JAX runtime (codegen -B runtime=...) in the same run, each against the same
transformers baseline; the JAX runtime's first calls compile its steps, so its warm-up runs the
first problem's items whole.

decode: a random-init checkpoint of a CodeGen shape (saved by transformers' save_pretrained),
a short prompt and a fixed number of new tokens (eos ignored) at batch 1 and 16: decode tokens/s,
engine vs transformers, timed as generate(N tokens) minus generate(1 token) so prefill drops out.

jax-decode: the JAX runtime alone (a TPU VM need not have torch): a random checkpoint of a shape
written as safetensors with numpy, decode tokens/s at each batch, and next to it the memory-bandwidth
bound: the bytes one decode step must read (the weights, plus the keys and values of every live
sequence) over the device's measured copy bandwidth.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))   # run from a checkout without installing

TINY = ROOT / "checkpoints" / "tiny-codegen"
SHAPES = {   # the released CodeGen sizes' shapes (random weights: only speed is measured)
    "tiny": dict(vocab_size=4096, n_embd=256, n_layer=4, n_head=8, rotary_dim=16),
    "350M": dict(vocab_size=51200, n_embd=1024, n_layer=20, n_head=16, rotary_dim=32),
    "2B": dict(vocab_size=51200, n_embd=2560, n_layer=32, n_head=32, rotary_dim=64),
    "6B": dict(vocab_size=51200, n_embd=4096, n_layer=33, n_head=16, rotary_dim=64),
}
SYNTHETIC = [   # used when the suite's problems cannot be loaded
    ["Assign the string \"{s}\" to a variable named \"text\".", "Split \"text\" into a list of words named \"words\".",
     "Count the words longer than three letters.", "Print the count."],
    ["Create a list named \"xs\" with the integers from 1 to {n}.", "Square every element of \"xs\".",
     "Compute the sum of the squares.", "Print the sum."],
    ["Define a function \"is_even\" that returns whether a number is even.",
     "Filter the list {xs} with \"is_even\" into \"evens\".", "Print \"evens\"."],
    ["Import pandas as pd and create a DataFrame named \"df\" with a column \"a\" holding {xs}.",
     "Add a column \"b\" that doubles \"a\".", "Compute the mean of \"b\".", "Print the mean rounded to 2 digits."],
]


def workload_items(n_problems: int | None, n_samples: int) -> list[tuple[tuple, list[str], int]]:
    """(item key, rendered turn prompts, max tokens per turn) for problems x 5 tests x n samples."""
    items = []
    try:
        from mtpb.problems import load_problems
        problems = sorted(load_problems(), key=lambda p: p.id)
    except Exception as e:   # the suite may be missing or mid-edit: the benchmark still runs
        print(f"(suite not loadable: {e.__class__.__name__}; using the synthetic workload)")
        problems = []
    if problems:
        for p in problems[:n_problems]:
            for t, test in enumerate(p.tests):
                for s in range(n_samples):
                    items.append(((p.id, t, s), p.prompts(test), p.max_gen_length))
    else:
        for pid, turns in enumerate(SYNTHETIC[:n_problems]):
            for t in range(5):
                values = dict(s=f"the quick brown fox {t}", n=5 + t, xs=list(range(t, t + 6)))
                for s in range(n_samples):
                    items.append(((pid, t, s), [x.format(**values) for x in turns], 128))
    return items


def run_workload(backend, items, params, batch: int) -> tuple[list[str], float, list[str]]:
    """The runner's turn loop: the final programs, the seconds spent in generate, the kept completions."""
    from mtpb.backends.base import Request
    from mtpb.prompts import Conversation
    talks = {key: Conversation(params.mode, prompts, max_gen_length=budget) for key, prompts, budget in items}
    seconds, kept = 0.0, []
    for lo in range(0, len(items), batch):
        group = [key for key, _, _ in items[lo:lo + batch]]
        while live := [key for key in group if not talks[key].done]:
            reqs = [Request(talks[key].context, talks[key].max_tokens, seed=hash(key) & 0xFFFF, problem_id=key[0],
                            test_index=key[1], sample_index=key[2], turn_index=talks[key].turn_index) for key in live]
            t0 = time.perf_counter()
            raws = backend.generate(reqs, params)
            seconds += time.perf_counter() - t0
            kept += [talks[key].add(raw) for key, raw in zip(live, raws)]
    return [talks[key].program for key, _, _ in items], seconds, kept


def workload(args) -> None:
    import torch
    from mtpb.backends.base import SamplingParams
    from mtpb.engine.load import parse_dtype
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = args.dtype or ("fp16" if device == "cuda" else "fp32")
    n_problems = args.problems if args.problems is not None else (None if device == "cuda" else 8)
    items = workload_items(n_problems, args.n)
    options = {"device": device, "dtype": dtype, "batch_size": str(args.batch_size)}
    params = SamplingParams(temperature=0.0)
    with tempfile.TemporaryDirectory() as tmp:
        if args.random_shape:   # random weights of a real size: speed only (they never stop early)
            args.model = str(random_checkpoint(args.random_shape, Path(tmp), parse_dtype(dtype), device))
        _workload(args, items, options, params, device, dtype)


def _workload(args, items, options, params, device, dtype) -> None:
    from mtpb.backends.registry import create_backend
    model = f"random-init {args.random_shape} shape" if args.random_shape else args.model
    print(f"workload: {len(items)} programs ({len({k[0] for k, _, _ in items})} problems x 5 tests x {args.n}), "
          f"greedy, batch {args.batch_size}, {device} {dtype}, model {model}")
    rows, results = [], {}
    for runtime in args.runtimes.split(","):
        extra = {"runtime": runtime}
        if runtime == "jax":
            extra["device"] = args.jax_device or device.split(":")[0].replace("cuda", "gpu")
            extra.update({"mesh": args.mesh} if args.mesh else {})
            extra.update({"dtype": args.jax_dtype} if args.jax_dtype else {})
        engine = create_backend("codegen", args.model, {**options, **extra})
        tokenizer = engine.engine.tokenizer
        warm = [it for it in items if it[0][0] == items[0][0][0]] if runtime == "jax" else items[:2]
        run_workload(engine, warm, params, args.batch_size)                  # warm-up (kernels, compilations)
        engine.engine.stats.__init__()
        ours, ours_s, kept = run_workload(engine, items, params, args.batch_size)
        stats = engine.engine.stats
        name = f"codegen {runtime} ({engine.describe()['device']})"
        rows.append((name, ours_s, stats.generated_tokens, stats.prompt_tokens - stats.reused_tokens))
        results[name] = (ours, ours_s)
    turns = sum(len(p) for _, p, _ in items)
    theirs = None
    if not args.engine_only:
        baseline = create_backend("transformers", args.model, options)
        run_workload(baseline, items[:2], params, args.batch_size)
        theirs, theirs_s, _ = run_workload(baseline, items, params, args.batch_size)
        budget = sum(b * len(p) for _, p, b in items)
        rows.insert(0, ("transformers (baseline)", theirs_s, budget, None))
    useful = sum(len(tokenizer.encode(k)) for k in kept)
    print(f"{turns} turns; {useful} tokens in the kept completions")
    print(f"{'backend':26}{'wall s':>9}{'generated tok':>15}{'gen tok/s':>11}{'kept tok/s':>12}{'prefilled tok':>15}")
    for name, secs, gen, pre in rows:
        print(f"{name:26}{secs:9.2f}{gen:15d}{gen / secs:11.1f}{useful / secs:12.1f}{pre if pre is not None else '-':>15}")
    if theirs is None:
        return
    failed = False
    for name, (ours, ours_s) in results.items():
        same = sum(a == b for a, b in zip(ours, theirs))
        print(f"{name}: speed-up (transformers wall / engine wall) {theirs_s / ours_s:.2f}x, "
              f"greedy programs identical {same}/{len(items)}")
        if same != len(items) and not args.allow_mismatch:
            a, b = next((a, b) for a, b in zip(ours, theirs) if a != b)
            print("first difference:\n--- engine\n" + a + "\n--- transformers\n" + b)
            failed = True
    if failed:
        sys.exit(1)


def random_checkpoint(shape: str, folder: Path, dtype, device: str = "cpu") -> Path:
    """Saved by transformers' save_pretrained; the tiny tokenizer beside it (ids it lacks decode to
    nothing, identically in both backends)."""
    import torch
    import transformers
    torch.manual_seed(0)
    eos = 4057 if shape == "tiny" else 50256
    cfg = transformers.CodeGenConfig(n_positions=2048, n_ctx=2048, bos_token_id=eos, eos_token_id=eos, **SHAPES[shape])
    with torch.device(device):   # random init on the GPU when there is one: seconds, not minutes
        model = transformers.CodeGenForCausalLM(cfg).to(dtype)
    model.save_pretrained(folder)
    del model
    for f in TINY.iterdir():   # any tokenizer with ids below the vocab size will do for speed
        if f.suffix in (".json", ".txt") and f.name not in ("config.json", "generation_config.json"):
            shutil.copy(f, folder / f.name)
    return folder


def decode(args) -> None:
    import torch
    import transformers
    from mtpb.engine.generate import Engine, GenerationRequest
    from mtpb.engine.load import load_model, parse_dtype
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = parse_dtype(args.dtype or ("fp16" if device == "cuda" else "fp32"))
    batches = [int(b) for b in args.batches.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        folder = random_checkpoint(args.shape, Path(tmp), dtype, device)
        net, tok = load_model(folder, device, dtype)
        hf = transformers.CodeGenForCausalLM.from_pretrained(folder, dtype=dtype).to(device).eval()
    prompt = "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"
    ids = torch.tensor([tok.encode(prompt)], device=device)
    n_params = sum(p.numel() for p in net.parameters())
    print(f"decode: {args.shape} shape ({n_params / 1e6:.0f}M parameters, random init), {device} {str(dtype)[6:]}, "
          f"prompt {ids.shape[1]} tokens, {args.tokens} new tokens (eos ignored)")

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def time_engine(batch, n):
        engine = Engine(net, tok, max_batch=batch)
        reqs = [GenerationRequest(prompt, n, ignore_eos=True, key=i) for i in range(batch)]
        engine.generate(reqs)                   # warm-up
        sync()
        t0 = time.perf_counter()
        engine.generate([GenerationRequest(prompt + " ", n, ignore_eos=True, key=i) for i in range(batch)])
        sync()
        return time.perf_counter() - t0

    @torch.inference_mode()
    def time_hf(batch, n):
        x = ids.repeat(batch, 1)
        kw = dict(attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=n, min_new_tokens=n,
                  pad_token_id=tok.eos_id)
        hf.generate(x, **kw)
        sync()
        t0 = time.perf_counter()
        hf.generate(x, **kw)
        sync()
        return time.perf_counter() - t0

    if device.startswith("cuda"):   # an idle GPU clocks down: spin it up before timing anything
        a = torch.randn(4096, 4096, device=device, dtype=dtype)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 1.0:
            a @ a
        sync()
    print(f"{'batch':>5}{'engine tok/s':>14}{'transformers tok/s':>20}{'ratio':>8}")
    for batch in batches:
        rates = []
        for fn in (time_engine, time_hf):
            t = fn(batch, args.tokens) - fn(batch, 1)
            rates.append(batch * (args.tokens - 1) / t)
        print(f"{batch:5d}{rates[0]:14.1f}{rates[1]:20.1f}{rates[0] / rates[1]:7.2f}x", flush=True)
        if batch == 1 and device.startswith("cuda"):
            weight_bytes = sum(p.numel() * p.element_size() for p in net.parameters())
            bw = copy_bandwidth(device)
            limit = bw / weight_bytes
            print(f"      batch-1 bound: {weight_bytes / 1e9:.2f} GB of weights per token at {bw / 1e12:.2f} TB/s "
                  f"(measured copy) = {limit:.0f} tok/s; engine reaches {100 * rates[0] / limit:.0f}% of it, "
                  f"transformers {100 * rates[1] / limit:.0f}%", flush=True)


def random_safetensors(shape: str, folder: Path, dtype: str) -> Path:
    """A CodeGen checkpoint of a shape with random weights (std 0.02), written with numpy alone in
    transformers' tensor names and layout, and the tiny tokenizer beside it."""
    import json

    import ml_dtypes
    import numpy as np
    eos = 4057 if shape == "tiny" else 50256
    d = dict(n_positions=2048, n_inner=None, **SHAPES[shape])
    E, V, L = d["n_embd"], d["vocab_size"], d["n_layer"]
    shapes = {"transformer.wte.weight": (V, E), "transformer.ln_f.weight": (E,), "transformer.ln_f.bias": (E,),
              "lm_head.weight": (V, E), "lm_head.bias": (V,)}
    for i in range(L):
        h = f"transformer.h.{i}."
        shapes.update({h + "ln_1.weight": (E,), h + "ln_1.bias": (E,), h + "attn.qkv_proj.weight": (3 * E, E),
                       h + "attn.out_proj.weight": (E, E), h + "mlp.fc_in.weight": (4 * E, E),
                       h + "mlp.fc_in.bias": (4 * E,), h + "mlp.fc_out.weight": (E, 4 * E), h + "mlp.fc_out.bias": (E,)})
    np_dtype, tag = (ml_dtypes.bfloat16, "BF16") if dtype == "bf16" else (np.float32, "F32")
    rng = np.random.default_rng(0)
    header, offset = {}, 0
    for name, s in shapes.items():
        size = int(np.prod(s)) * np.dtype(np_dtype).itemsize
        header[name] = {"dtype": tag, "shape": list(s), "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    with open(folder / "model.safetensors", "wb") as f:
        f.write(len(blob).to_bytes(8, "little") + blob)
        for name, s in shapes.items():
            w = np.ones(s, np.float32) if name.endswith("ln_1.weight") or name.endswith("ln_f.weight") else (
                rng.standard_normal(s, dtype=np.float32) * 0.02)
            f.write(w.astype(np_dtype).tobytes())
    config = {"model_type": "codegen", "architectures": ["CodeGenForCausalLM"], "n_ctx": 2048,
              "bos_token_id": eos, "eos_token_id": eos, "tie_word_embeddings": False, **d}
    (folder / "config.json").write_text(json.dumps(config))
    for f in TINY.iterdir():
        if f.suffix in (".json", ".txt") and f.name not in ("config.json", "generation_config.json"):
            shutil.copy(f, folder / f.name)
    return folder


def jax_decode(args) -> None:
    import jax
    import jax.numpy as jnp
    from mtpb.engine.jax.load import load_engine
    from mtpb.engine.requests import GenerationRequest
    batches = [int(b) for b in args.batches.split(",")]
    platform = args.device or jax.devices()[0].platform
    dtype = args.dtype or ("bf16" if platform == "tpu" else "fp32")
    prompt = "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"
    with tempfile.TemporaryDirectory() as tmp:
        folder = random_safetensors(args.shape, Path(tmp), dtype)
        engine = load_engine(folder, device=platform, dtype=dtype, batch_size=max(batches), mesh=args.mesh,
                             max_length=1024)
    info = engine.describe()
    weight_bytes = sum(v.size * v.dtype.itemsize for k, v in engine.params.items() if k not in ("sin", "cos"))
    n_dev = len(engine.mesh.devices.ravel())
    bw = jax_copy_bandwidth(engine.mesh.devices.ravel()[0]) * n_dev
    print(f"jax-decode: {args.shape} shape ({info['parameters'] / 1e6:.0f}M parameters, random init), "
          f"{info['device']} mesh {info['mesh']} {info['dtype']}, {args.tokens} new tokens (eos ignored); "
          f"copy bandwidth {bw / 1e12:.2f} TB/s over {n_dev} device(s)")
    cfg = engine.cfg
    kv_per_token = 2 * cfg.n_layer * cfg.n_embd * jnp.dtype(engine.dtype).itemsize

    def timed(batch, n):
        reqs = lambda tag: [GenerationRequest(prompt + tag, n, ignore_eos=True, key=(tag, i)) for i in range(batch)]  # noqa: E731
        engine.generate(reqs("#"))             # warm-up: compiles this batch's buckets
        t0 = time.perf_counter()
        engine.generate(reqs(" "))
        return time.perf_counter() - t0

    print(f"{'batch':>5}{'decode tok/s':>14}{'bound tok/s':>13}{'of bound':>10}")
    for batch in batches:
        t = timed(batch, args.tokens) - timed(batch, 1)
        rate = batch * (args.tokens - 1) / t
        context = len(engine.tokenizer.encode(prompt)) + args.tokens / 2          # mean keys read per sequence
        step_bytes = weight_bytes + batch * context * kv_per_token
        bound = batch * bw / step_bytes
        print(f"{batch:5d}{rate:14.1f}{bound:13.1f}{100 * rate / bound:9.0f}%", flush=True)


def jax_copy_bandwidth(device) -> float:
    """Bytes per second read + written by a large on-device copy (one device)."""
    import jax
    import jax.numpy as jnp
    x = jax.device_put(jnp.zeros(256 * 2**20, jnp.float32), device)                 # 1 GiB
    copy = jax.jit(lambda a: a + 1.0)
    copy(x).block_until_ready()
    t0 = time.perf_counter()
    for _ in range(10):
        y = copy(x)
    y.block_until_ready()
    return 10 * 2 * x.size * x.dtype.itemsize / (time.perf_counter() - t0)


def copy_bandwidth(device: str) -> float:
    """Bytes per second read + written by a large device-to-device copy."""
    import torch
    x = torch.empty(256 * 2**20, dtype=torch.float32, device=device)   # 1 GiB
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(10):
        y.copy_(x)
    torch.cuda.synchronize()
    return 10 * 2 * x.numel() * x.element_size() / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    w = sub.add_parser("workload", help="multi-turn workload, engine vs transformers (greedy)")
    w.add_argument("--model", default=str(TINY))
    w.add_argument("--problems", type=int, default=None, help="first K problems (default 8 on CPU, all on GPU)")
    w.add_argument("--n", type=int, default=1, help="samples per (problem, test)")
    w.add_argument("--batch-size", type=int, default=16)
    w.add_argument("--engine-only", action="store_true")
    w.add_argument("--random-shape", choices=sorted(SHAPES), default=None,
                   help="instead of --model, a random-init checkpoint of this shape (speed only)")
    w.add_argument("--runtimes", default="torch", help="engine runtimes to run, comma-separated: torch,jax")
    w.add_argument("--jax-device", default=None, help="JAX platform for runtime jax (default: --device's)")
    w.add_argument("--jax-dtype", default=None, help="dtype for runtime jax (default: --dtype's)")
    w.add_argument("--mesh", default=None, help="runtime jax: DATAxMODEL")
    w.add_argument("--allow-mismatch", action="store_true",
                   help="report but do not fail on differing greedy programs (random weights in fp16 tie often)")
    d = sub.add_parser("decode", help="decode tokens/s on a random-init shape")
    d.add_argument("--shape", choices=sorted(SHAPES), default="350M")
    d.add_argument("--tokens", type=int, default=64)
    d.add_argument("--batches", default="1,16")
    j = sub.add_parser("jax-decode", help="decode tokens/s of the JAX runtime against the bandwidth bound")
    j.add_argument("--shape", choices=sorted(SHAPES), default="350M")
    j.add_argument("--tokens", type=int, default=128)
    j.add_argument("--batches", default="1,32")
    j.add_argument("--mesh", default=None)
    for p in (w, d, j):
        p.add_argument("--device", default=None)
        p.add_argument("--dtype", default=None)
        p.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    {"workload": workload, "decode": decode, "jax-decode": jax_decode}[args.mode](args)


if __name__ == "__main__":
    main()
