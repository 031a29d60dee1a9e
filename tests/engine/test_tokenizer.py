"""Token ids identical to transformers' tokenizer on real Python source (stdlib files)."""
from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path

import pytest
import transformers

from mtpb.engine.tokenizer import EOS, WHITESPACE_TOKENS, Tokenizer

STDLIB = Path(sysconfig.get_paths()["stdlib"])
SOURCES = ["textwrap.py", "json/decoder.py", "tabnanny.py", "difflib.py", "csv.py"]
TRICKY = ["    return x\n\t\tpass\n" + " " * 40 + "y = 1\n" + "\t" * 11 + "z\n",
          "s = 'héllo wörld ✓ 日本'\n", "a  =  b\r\n\r\n\n\n", "<|endoftext|>x = 1<|endoftext|>", "", " "]


def texts():
    return [(STDLIB / name).read_text(encoding="utf-8") for name in SOURCES] + TRICKY


@pytest.fixture(scope="module")
def slow_files_only(tiny, tmp_path_factory) -> Path:
    """The tiny checkpoint's tokenizer without tokenizer.json: vocab.json + merges.txt + added_tokens.json."""
    folder = tmp_path_factory.mktemp("no-tokenizer-json")
    for f in tiny.iterdir():
        if f.name != "tokenizer.json" and f.suffix in (".json", ".txt"):
            shutil.copy(f, folder / f.name)
    return folder


@pytest.mark.parametrize("which", ["tokenizer.json", "vocab+merges+added"])
def test_ids_identical_to_transformers(tiny, slow_files_only, which):
    folder = tiny if which == "tokenizer.json" else slow_files_only
    ours = Tokenizer.from_folder(folder)
    ref = transformers.AutoTokenizer.from_pretrained(folder)
    for text in texts():
        want = ref(text)["input_ids"]
        assert ours.encode(text) == want
        assert ours.decode(want) == ref.decode(want, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def test_both_sources_give_the_same_tokenizer(tiny, slow_files_only):
    a, b = Tokenizer.from_folder(tiny), Tokenizer.from_folder(slow_files_only)
    assert a.vocab_size == b.vocab_size
    for text in texts():
        assert a.encode(text) == b.encode(text)


def test_codegen_whitespace_tokens(tiny):
    tok = Tokenizer.from_folder(tiny)
    assert len(WHITESPACE_TOKENS) == 38
    ids = [tok.tk.token_to_id(t) for t in WHITESPACE_TOKENS]
    assert ids == list(range(ids[0], ids[0] + 38)), "added in CodeGen's order, 31 spaces first"
    assert tok.encode("    return") == [tok.tk.token_to_id("    "), tok.tk.token_to_id("return")]
    assert tok.eos_id == tok.tk.token_to_id(EOS)
    assert tok.encode(" " * 33)[0] == tok.tk.token_to_id(" " * 31)   # leftmost-longest


def test_decode_round_trips_source(tiny):
    tok = Tokenizer.from_folder(tiny)
    for text in texts():
        assert tok.decode(tok.encode(text)) == text


def test_added_tokens_out_of_order_are_an_error(slow_files_only, tmp_path):
    import json
    folder = tmp_path / "bad"
    shutil.copytree(slow_files_only, folder)
    added = json.loads((folder / "added_tokens.json").read_text())
    first = next(iter(added))
    added[first] += 100
    (folder / "added_tokens.json").write_text(json.dumps(added))
    with pytest.raises(ValueError, match="added_tokens.json"):
        Tokenizer.from_folder(folder)
