"""Train the tiny CodeGen checkpoint the tests, the demo and the benchmarks use.

    python scripts/train_tiny.py --out checkpoints/tiny-codegen [--steps 1200] [--max-minutes 23]

Data: the standard library's Python source under the running interpreter's lib dir (offline),
reshaped towards what MTPB asks (function bodies dedented, docstrings dropped, and "# comment +
code" blocks laid out as MTPB programs); see code_views and block_documents.
Tokenizer: byte-level BPE (vocab 4096 with the added tokens) trained on that source, with CodeGen's
added whitespace tokens (runs of 31..2 spaces, 9..2 tabs) split out before BPE, exactly as the
added-token matcher does at encoding time. Model: the CodeGen architecture of mtpb.engine.model,
trained in fp32 on 384-token windows, and saved in Hugging Face format (config.json, fp16
model.safetensors, tokenizer.json, vocab.json, merges.txt, added_tokens.json, ...) that
transformers' CodeGenForCausalLM and AutoTokenizer load. The learning rate follows steps or wall
time, whichever is further along, so a slow machine still ends decayed.
"""
from __future__ import annotations

import argparse
import ast
import json
import math
import random
import re
import sys
import sysconfig
import tempfile
import textwrap
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer as HFTokenizer, decoders, pre_tokenizers, trainers
from tokenizers.models import BPE

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout

from mtpb.engine.model import CodeGen, CodeGenConfig, qkv_to_hf
from mtpb.engine.tokenizer import EOS, WHITESPACE_TOKENS, _read_merges, build_bpe

VOCAB = 4096
SKIP_DIRS = {"site-packages", "test", "tests", "idle_test", "__pycache__", "lib2to3", "pydoc_data", "encodings"}
HEX = re.compile(r"0x[0-9a-fA-F]{2}")
# What the added-token matcher cuts out before BPE (leftmost-longest over the 38 whitespace tokens).
WHITESPACE_RUN = re.compile(r" {2,31}|\t{2,9}")


def corpus_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [p for p in sorted(root.rglob("*.py"))
             if not SKIP_DIRS & set(p.relative_to(root).parts[:-1]) and p.stat().st_size < 150_000]
    return files


def read_texts(files: list[Path]) -> list[str]:
    texts = []
    for p in files:
        try:
            texts.append(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError):
            continue
    return texts


def code_views(source: str) -> list[str]:
    """Every function body dedented to top level, without docstrings and with each comment block
    cut to its last line, plus a quarter of the modules whole (same cleaning). A few million
    tokens teach a tiny model little, so the data leans towards what MTPB asks of it: a one-line
    comment, then top-level code, then the next comment."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    lines = source.splitlines(keepends=True)
    drop: dict[int, str] = {}          # line index -> replacement ("" drops it)
    bodies = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) or not node.body:
            continue
        first = node.body[0]
        doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)
        if doc:
            for i in range(first.lineno - 1, first.end_lineno):
                drop[i] = ""
            if len(node.body) == 1:   # keep the block valid
                indent = lines[first.lineno - 1][:len(lines[first.lineno - 1]) - len(lines[first.lineno - 1].lstrip())]
                drop[first.lineno - 1] = indent + "pass\n"
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = node.body[1].lineno - 1 if doc and len(node.body) > 1 else node.body[0].lineno - 1
            if not (doc and len(node.body) == 1) and 3 <= node.end_lineno - start <= 80:
                bodies.append((start, node.end_lineno))

    def render(lo: int, hi: int) -> str:
        kept = [drop.get(i, lines[i]) for i in range(lo, hi)]
        kept = [line for line in kept if line]
        out = [line for j, line in enumerate(kept)
               if not (line.lstrip().startswith("#") and j + 1 < len(kept) and kept[j + 1].lstrip().startswith("#"))]
        return "".join(out)

    views = [textwrap.dedent(render(lo, hi)) for lo, hi in bodies]
    if len(lines) % 4 == 0:   # some whole modules too (imports, constants, classes), deterministically
        views.append(render(0, len(lines)))
    return [v for v in views if v.strip() and len(HEX.findall(v)) < 8]   # no code-page tables


def commented_blocks(view: str) -> list[str]:
    """Each comment line with the code under it (to the next blank line, comment or dedent),
    dedented: the unit an MTPB turn asks for."""
    lines = view.splitlines()
    blocks = []
    for i, line in enumerate(lines):
        text = line.lstrip()
        if not text.startswith("#") or i + 1 >= len(lines):
            continue
        indent = len(line) - len(text)
        body = []
        for nxt in lines[i + 1:]:
            stripped = nxt.lstrip()
            if not stripped or stripped.startswith("#") or len(nxt) - len(stripped) < indent:
                break
            body.append(nxt)
        if 1 <= len(body) <= 12 and len(body[0]) - len(body[0].lstrip()) == indent:
            blocks.append(textwrap.dedent("\n".join([line] + body)))
    return [b for b in blocks if len(HEX.findall(b)) < 4]


def block_documents(views: list[str], rng: random.Random) -> list[str]:
    """Programs laid out as MTPB builds them: "# comment\ncode\n\n# comment\ncode\n\n...", from
    commented blocks of the stdlib, so the model learns to end a step and start the next comment
    (where truncation stops it)."""
    blocks = [b for v in views for b in commented_blocks(v)]
    rng.shuffle(blocks)
    docs, i = [], 0
    while i < len(blocks):
        n = rng.randint(3, 8)
        docs.append("\n\n".join(blocks[i:i + n]) + "\n")
        i += n
    return docs


def split_whitespace_runs(text: str):
    """The pieces BPE sees once the added whitespace tokens are taken out."""
    start = 0
    for m in WHITESPACE_RUN.finditer(text):
        if m.start() > start:
            yield text[start:m.start()]
        start = m.end()
    if start < len(text):
        yield text[start:]


def train_tokenizer(texts: list[str]) -> HFTokenizer:
    base = VOCAB - 1 - len(WHITESPACE_TOKENS)           # BPE vocab, then <|endoftext|>, then whitespace
    bpe = HFTokenizer(BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=base, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator((piece for t in texts for piece in split_whitespace_runs(t)), trainer)
    with tempfile.TemporaryDirectory() as tmp:
        bpe.model.save(tmp)
        vocab = json.loads((Path(tmp) / "vocab.json").read_text(encoding="utf-8"))
        merges = _read_merges(Path(tmp) / "merges.txt")
    vocab[EOS] = len(vocab)                              # GPT-2 keeps <|endoftext|> in vocab.json, last
    return build_bpe(vocab, merges, list(WHITESPACE_TOKENS))


def token_stream(tk: HFTokenizer, texts: list[str]) -> torch.Tensor:
    eos = tk.token_to_id(EOS)
    ids: list[int] = []
    for enc in tk.encode_batch(texts):
        ids.extend(enc.ids)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.int16 if VOCAB < 32768 else torch.int32)


def init_weights(model: CodeGen, n_layer: int) -> None:
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            torch.nn.init.zeros_(p)
        elif "ln_" in name:
            torch.nn.init.ones_(p)
        else:   # residual-stream writers scaled down with depth (GPT-2)
            std = 0.02 / math.sqrt(2 * n_layer) if name.endswith(("out_proj.weight", "fc_out.weight")) else 0.02
            torch.nn.init.normal_(p, std=std)


def batches(data: torch.Tensor, batch: int, seq: int, rng: random.Random):
    while True:
        starts = [rng.randrange(0, len(data) - seq - 1) for _ in range(batch)]
        chunk = torch.stack([data[s:s + seq + 1].long() for s in starts])
        yield chunk[:, :-1], chunk[:, 1:]


@torch.no_grad()
def eval_loss(model: CodeGen, data: torch.Tensor, seq: int, n: int = 8) -> float:
    rng = random.Random(1)
    x, y = next(batches(data, n, seq, rng))
    logits = model(x)
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten()).item()


def save_checkpoint(model: CodeGen, cfg: CodeGenConfig, tk: HFTokenizer, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    state = {}
    for name, p in model.state_dict().items():
        if name == "rope":
            continue
        if name.endswith("attn.qkv_proj.weight"):
            p = qkv_to_hf(p, cfg.n_embd)
        state[name] = p.detach().to(torch.float16).contiguous()
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(cfg.to_hf_dict("float16"), indent=2) + "\n")
    (out / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id}, indent=2) + "\n")
    tk.save(str(out / "tokenizer.json"))
    vocab = {t: i for t, i in tk.get_vocab(with_added_tokens=False).items()}
    vocab[EOS] = tk.token_to_id(EOS)
    (out / "vocab.json").write_text(json.dumps(dict(sorted(vocab.items(), key=lambda kv: kv[1])),
                                               ensure_ascii=False) + "\n", encoding="utf-8")
    merges = json.loads(tk.to_str())["model"]["merges"]
    lines = [" ".join(m) if isinstance(m, list) else m for m in merges]
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(lines) + "\n", encoding="utf-8")
    added = {t: tk.token_to_id(t) for t in WHITESPACE_TOKENS}
    (out / "added_tokens.json").write_text(json.dumps(added, indent=2) + "\n")
    special = {"bos_token": EOS, "eos_token": EOS, "unk_token": EOS}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    (out / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "CodeGenTokenizer", "model_max_length": cfg.n_positions,
         "add_prefix_space": False, "clean_up_tokenization_spaces": False, **special}, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="checkpoints/tiny-codegen")
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--max-minutes", type=float, default=23.0, help="stop early (and save) after this")
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--seq", type=int, default=384)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--n-embd", type=int, default=256)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    t0 = time.time()

    files = corpus_files()
    sources = read_texts(files)
    rng_docs = random.Random(0)
    held_views = [v for t in sources[::50] for v in code_views(t)]
    views = [v for i, t in enumerate(sources) if i % 50 for v in code_views(t)]
    held_out = held_views + block_documents(held_views, rng_docs)
    texts = views + [d for _ in range(2) for d in block_documents(views, rng_docs)]   # two groupings
    rng_docs.shuffle(texts)   # bodies of one file spread over the stream
    train_texts = texts
    tk = train_tokenizer(train_texts)
    assert tk.get_vocab_size() == VOCAB, tk.get_vocab_size()
    data, val = token_stream(tk, train_texts), token_stream(tk, held_out)
    print(f"{len(sources)} files -> {len(texts)} documents, {sum(map(len, texts)) / 1e6:.1f} MB, {len(data) / 1e6:.2f}M tokens "
          f"({time.time() - t0:.0f}s)", flush=True)

    eos = tk.token_to_id(EOS)
    cfg = CodeGenConfig(vocab_size=VOCAB, n_positions=2048, n_embd=args.n_embd, n_layer=args.n_layer,
                        n_head=args.n_head, rotary_dim=args.n_embd // args.n_head // 2,
                        bos_token_id=eos, eos_token_id=eos)
    model = CodeGen(cfg)
    init_weights(model, cfg.n_layer)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    warmup = 100
    rng = random.Random(0)
    stream = batches(data, args.batch, args.seq, rng)
    deadline = t0 + 60 * args.max_minutes
    step = 0
    train_start = time.time()
    budget = deadline - train_start
    for step in range(1, args.steps + 1):
        # Progress is steps or wall time, whichever is further along, so that a slow (shared) CPU
        # still ends on a decayed learning rate inside --max-minutes.
        progress = min(max(step / args.steps, (time.time() - train_start) / budget), 1.0)
        lr = args.lr * min(step / warmup, 0.5 * (1 + math.cos(math.pi * progress)) * 0.95 + 0.05)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = next(stream)
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 25 == 0 or step == 1:
            print(f"step {step} loss {loss.item():.3f} lr {lr:.2e} ({time.time() - t0:.0f}s)", flush=True)
        if step % 250 == 0:
            print(f"  held-out loss {eval_loss(model, val, args.seq):.3f}", flush=True)
        if progress >= 1.0:
            print(f"stopping at step {step}: --max-minutes reached", flush=True)
            break
    model.eval()
    print(f"final held-out loss {eval_loss(model, val, args.seq):.3f}", flush=True)
    save_checkpoint(model, cfg, tk, Path(args.out))
    sample(Path(args.out))
    print(f"saved {args.out} after {step} steps ({time.time() - t0:.0f}s)")


def sample(folder: Path) -> None:
    """Greedy completions of MTPB-style prompts, to eyeball what the model writes."""
    from mtpb.engine.generate import Engine, GenerationRequest
    from mtpb.engine.load import load_model
    model, tok = load_model(folder, device="cpu", dtype="fp32")
    prefix = "# Import libraries.\n\nimport numpy as np\n\n"
    prompts = ['Assign the string "abc" to a variable named "raw".', "Create a list of the numbers 1 to 10.",
               "Define a function that returns the square of a number."]
    done = Engine(model, tok).generate([GenerationRequest(f"{prefix}# {p}\n", 48) for p in prompts])
    for p, c in zip(prompts, done):
        print(f"sample: # {p}\n{c.text!r}")


if __name__ == "__main__":
    main()
