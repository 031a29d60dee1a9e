"""The served model for test_serve.py and test_openai_backend.py: a checkpoint and a running `mtpb serve`.

The model is the bundled tiny checkpoint when it exists, else a random-init CodeGen with a small
byte-level BPE made here.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from mtpb.paths import data_path

REPO = Path(__file__).resolve().parent.parent
NAME = "tiny"


def tiny_checkpoint(root: Path) -> Path:
    """The bundled tiny checkpoint, or a random-init 2-layer CodeGen made once under root."""
    bundled = data_path("checkpoints") / "tiny-codegen"
    if (bundled / "config.json").is_file():
        return bundled
    folder = root / "random-codegen"
    if (folder / "config.json").is_file():
        return folder
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import CodeGenConfig, CodeGenForCausalLM
    texts = [p.read_text() for p in sorted((REPO / "problems").glob("*.yaml"))]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    eos = tokenizer.token_to_id("<|endoftext|>")
    torch.manual_seed(0)
    # a wide init keeps the logits far apart, so greedy choices do not hinge on rounding
    config = CodeGenConfig(vocab_size=tokenizer.get_vocab_size(), n_positions=512, n_ctx=512, n_layer=2,
                           n_embd=64, n_head=4, rotary_dim=8, bos_token_id=eos, eos_token_id=eos,
                           initializer_range=0.2)
    tmp = root / "random-codegen.tmp"
    CodeGenForCausalLM(config).save_pretrained(tmp)
    tokenizer.save(str(tmp / "tokenizer.json"))
    tmp.rename(folder)
    return folder


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    return tiny_checkpoint(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def server(checkpoint):
    from mtpb.serve import start_server
    with start_server(str(checkpoint), port=0, batch_size=8, served_model_name=NAME, device="cpu").start() as s:
        yield s
