"""Checkpoint folders: formats, dtypes, meta-device loading and the errors users see."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from mtpb.engine.load import EngineError, load_engine, load_model, parse_dtype, resolve_folder, weight_files


def test_safetensors_shards_are_listed_in_index_order(small_ckpt):
    files = weight_files(small_ckpt)
    assert len(files) > 1 and all(f.suffix == ".safetensors" for f in files)


def test_bin_shards_load_and_skip_stored_causal_masks(small_bin):
    assert all(f.suffix == ".bin" for f in weight_files(small_bin))
    net, _ = load_model(small_bin, "cpu", "fp32")
    assert not any("causal_mask" in n for n, _ in net.named_parameters())


def test_loads_straight_into_the_target_dtype(small_ckpt):
    net, _ = load_model(small_ckpt, "cpu", "bf16")
    assert {p.dtype for p in net.parameters()} == {torch.bfloat16}
    assert not any(p.is_meta for p in net.parameters())
    assert net.rope.dtype == torch.complex64 and torch.isfinite(torch.view_as_real(net.rope)).all()


def test_missing_tensor_is_an_error(small_ckpt, tmp_path):
    from safetensors.torch import load_file, save_file
    folder = tmp_path / "broken"
    shutil.copytree(small_ckpt, folder)
    for f in folder.glob("*.safetensors*"):
        f.unlink()
    state = {}
    for f in weight_files(small_ckpt):
        state.update(load_file(f))
    state.pop("lm_head.bias")
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="lm_head.bias"):
        load_model(folder, "cpu", "fp32")


def test_not_codegen_is_an_error(small_ckpt, tmp_path):
    folder = tmp_path / "gpt2"
    shutil.copytree(small_ckpt, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model_type"] = "gpt2"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="not a CodeGen"):
        load_model(folder, "cpu", "fp32")


def test_another_architecture_is_named_not_called_bad_json(small_ckpt, tmp_path):
    folder = tmp_path / "llama"
    shutil.copytree(small_ckpt, folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    with pytest.raises(ValueError, match="model_type is 'llama', not 'codegen'") as caught:
        load_model(folder, "cpu", "fp32")
    assert "JSON" not in str(caught.value)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such checkpoint folder"):
        resolve_folder(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError):
        weight_files(tmp_path)


def test_dtype_names():
    assert parse_dtype("fp16") is torch.float16 and parse_dtype("bfloat16") is torch.bfloat16
    with pytest.raises(ValueError):
        parse_dtype("int8")


def test_cut_weights_and_broken_config_name_the_file(small_ckpt, small_bin, tmp_path):
    for source in (small_ckpt, small_bin):
        folder = tmp_path / f"cut-{source.name}"
        shutil.copytree(source, folder)
        shard = weight_files(folder)[0]
        shard.write_bytes(shard.read_bytes()[:shard.stat().st_size // 2])   # a download cut halfway
        with pytest.raises(ValueError, match=f"{shard.name}: cannot read the weights .*damaged or incomplete"):
            load_model(folder, "cpu", "fp32")
    (folder / "config.json").write_text('{"n_layer": 2,\n')
    with pytest.raises(ValueError, match=r"config.json: not valid JSON"):
        load_model(folder, "cpu", "fp32")


@pytest.mark.parametrize("options, option, words", [
    ({"batch_size": "many"}, "batch_size", "expected an integer"),
    ({"batch_size": 0}, "batch_size", "at least 1"),
    ({"max_length": "1"}, "max_length", "at least 2"),
    ({"top_k": "-1"}, "top_k", "at least 0"),
    ({"dtype": "int4"}, "dtype", "use fp32, fp16 or bf16"),
    ({"device": "gpu0"}, "device", "not a torch device"),
    ({"decode": "fast"}, "decode", r"graphs \(CUDA only\) or eager"),
    ({"device": "cpu", "decode": "graphs"}, "decode", "needs a CUDA device"),
])
def test_load_engine_errors_name_the_option_in_plain_words(small_ckpt, options, option, words):
    with pytest.raises(EngineError, match=words) as caught:
        load_engine(small_ckpt, **options)
    assert caught.value.option == option and caught.value.value == options[option]
    assert "-B" not in str(caught.value) and "--" not in str(caught.value)


def test_load_engine_gives_a_ready_engine_and_says_what_cannot_load(small_ckpt, tmp_path):
    engine = load_engine(small_ckpt, device="cpu", batch_size="3", max_length="128", top_k="7")
    assert (engine.max_batch, engine.max_length, engine.top_k) == (3, 128, 7)
    assert engine.describe()["dtype"] == "float32" and engine.describe()["device"] == "cpu"
    with pytest.raises(EngineError, match="cannot load .*no such checkpoint folder") as caught:
        load_engine(tmp_path / "missing", device="cpu")
    assert caught.value.option is None
