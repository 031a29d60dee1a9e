"""CodeGen's tokenizer: GPT-2 byte-level BPE plus added tokens for runs of spaces and tabs.

Built on the `tokenizers` library with the same components transformers' CodeGenTokenizer uses, so
ids match it exactly: from tokenizer.json when the folder has one, else from vocab.json +
merges.txt + added_tokens.json. Added tokens are matched before BPE (leftmost, longest), which is
why "    return" encodes as ["    ", "return"] and not as ["   ", " return"].
"""
from __future__ import annotations

import json
from pathlib import Path

from tokenizers import AddedToken, Tokenizer as HFTokenizer, decoders, pre_tokenizers, processors
from tokenizers.models import BPE

EOS = "<|endoftext|>"
# CodeGen's added_tokens.json order: 31 spaces down to 2, then 9 tabs down to 2.
WHITESPACE_TOKENS = tuple([" " * n for n in range(31, 1, -1)] + ["\t" * n for n in range(9, 1, -1)])


def build_bpe(vocab: dict[str, int], merges: list[tuple[str, str]], added: list[str]) -> HFTokenizer:
    """The byte-level BPE pipeline of transformers' CodeGenTokenizer; `added` get the next ids."""
    tk = HFTokenizer(BPE(vocab=vocab, merges=merges, dropout=None, continuing_subword_prefix="",
                         end_of_word_suffix="", fuse_unk=False))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.ByteLevel(add_prefix_space=True, use_regex=True, trim_offsets=False)
    tk.add_special_tokens([AddedToken(EOS, special=True, normalized=False)])
    tk.add_tokens([AddedToken(t, special=False, normalized=True) for t in added])
    return tk


def _read_merges(path: Path) -> list[tuple[str, str]]:
    merges = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#version") or not line.strip():
            continue
        a, b = line.split(" ")
        merges.append((a, b))
    return merges


class Tokenizer:
    """encode/decode for the engine; the eos id comes from the model config when it has one."""

    def __init__(self, tk: HFTokenizer, eos_id: int | None = None):
        self.tk = tk
        self.eos_id = eos_id if eos_id is not None else tk.token_to_id(EOS)

    @classmethod
    def from_folder(cls, folder: str | Path, eos_id: int | None = None) -> "Tokenizer":
        folder = Path(folder)
        if (folder / "tokenizer.json").is_file():
            return cls(HFTokenizer.from_file(str(folder / "tokenizer.json")), eos_id)
        vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
        if not (vocab_file.is_file() and merges_file.is_file()):
            raise FileNotFoundError(f"{folder}: no tokenizer.json and no vocab.json + merges.txt")
        vocab = json.loads(vocab_file.read_text(encoding="utf-8"))
        added: dict[str, int] = {}
        if (folder / "added_tokens.json").is_file():
            added = json.loads((folder / "added_tokens.json").read_text(encoding="utf-8"))
        extra = [t for t, _ in sorted(added.items(), key=lambda kv: kv[1]) if t not in vocab]
        tk = build_bpe(vocab, _read_merges(merges_file), extra)
        for token, want in added.items():
            if tk.token_to_id(token) != want:   # ids are positional: a gap would shift every later one
                raise ValueError(f"{folder}/added_tokens.json: {token!r} should be id {want}, "
                                 f"got {tk.token_to_id(token)}")
        return cls(tk, eos_id)

    @property
    def vocab_size(self) -> int:
        return self.tk.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.tk.encode(text).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tk.encode_batch(texts)]

    def decode(self, ids: list[int]) -> str:
        return self.tk.decode(ids, skip_special_tokens=False)
