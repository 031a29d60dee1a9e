"""Numerics against transformers' CodeGenForCausalLM on random-init checkpoints it saved itself."""
from __future__ import annotations

import pytest
import torch

from mtpb.engine.load import load_model
from mtpb.engine.model import CodeGen, CodeGenConfig, qkv_from_hf, qkv_to_hf

from .conftest import SHAPE_350M, hf_model, save_random


def random_ids(vocab: int, batch: int, length: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, length), generator=g)


def test_qkv_permutation_round_trips():
    w = torch.randn(3 * 64, 10)
    assert torch.equal(qkv_to_hf(qkv_from_hf(w, 64), 64), w)


def test_qkv_split_follows_the_four_shards():
    # HF: rows viewed as (4 shards, [q, v, k], local); q is the concat of each shard's first part
    n, local = 64, 16
    w = torch.arange(3 * n, dtype=torch.float32)[:, None]
    q, k, v = qkv_from_hf(w, n).split(n)
    shards = w.view(4, 3, local)
    assert torch.equal(q.view(4, local), shards[:, 0])
    assert torch.equal(v.view(4, local), shards[:, 1])
    assert torch.equal(k.view(4, local), shards[:, 2])


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_logits_match_transformers_safetensors_sharded(small_ckpt, attn):
    ours, _ = load_model(small_ckpt, "cpu", "fp32")
    ref = hf_model(small_ckpt, attn=attn)
    ids = random_ids(ours.cfg.vocab_size, 3, 70)
    with torch.no_grad():
        want = ref(ids).logits
        got = ours(ids)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=2e-4, rtol=1e-4)


def test_logits_match_transformers_bin_sharded_with_old_buffers(small_bin):
    ours, _ = load_model(small_bin, "cpu", "fp32")
    ref = hf_model(small_bin)
    ids = random_ids(ours.cfg.vocab_size, 2, 50, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), ref(ids).logits, atol=2e-4, rtol=1e-4)


def test_last_position_logits_equal_full_logits(small_ckpt):
    ours, _ = load_model(small_ckpt, "cpu", "fp32")
    ids = random_ids(ours.cfg.vocab_size, 2, 20)
    with torch.no_grad():
        full = ours(ids)
        last = ours(ids, last=torch.tensor([19, 7]))
    torch.testing.assert_close(last[:, 0], full[[0, 1], [19, 7]], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_half_precision_close_to_transformers(small_ckpt, dtype):
    torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    ours, _ = load_model(small_ckpt, "cpu", dtype)
    assert all(p.dtype == torch_dtype for p in ours.parameters())
    ref = hf_model(small_ckpt, dtype=torch_dtype)
    exact = hf_model(small_ckpt)
    ids = random_ids(ours.cfg.vocab_size, 2, 40, seed=5)
    with torch.no_grad():
        got, want, truth = ours(ids), ref(ids).logits.float(), exact(ids).logits
    # no further from the fp32 truth than transformers' own half-precision run (plus slack)
    ours_err = (got - truth).abs().max().item()
    ref_err = (want - truth).abs().max().item()
    assert ours_err <= 2 * ref_err + 1e-2, (ours_err, ref_err)


def test_training_forward_is_differentiable():
    cfg = CodeGenConfig(vocab_size=64, n_positions=32, n_embd=32, n_layer=1, n_head=4, rotary_dim=4)
    net = CodeGen(cfg)
    loss = net(random_ids(64, 2, 8)).logsumexp(-1).mean()
    loss.backward()
    assert net.transformer.h[0].attn.qkv_proj.weight.grad is not None


@pytest.mark.slow
def test_350m_shape_logits_match_transformers(tmp_path):
    """The exact codegen-350M shape (n_embd 1024, 20 layers, 16 heads, rotary_dim 32, vocab 51200)."""
    folder = save_random(tmp_path / "350m", SHAPE_350M, seed=0, shard="500MB")
    ours, _ = load_model(folder, "cpu", "fp32")
    ref = hf_model(folder)
    ids = random_ids(51200, 2, 48, seed=7)
    with torch.no_grad():
        got, want = ours(ids), ref(ids).logits
    torch.testing.assert_close(got, want, atol=5e-4, rtol=1e-4)
    assert torch.equal(got.argmax(-1), want.argmax(-1))


def test_inference_layout_gives_the_same_logits_and_leaves_the_model_alone(small_ckpt):
    from mtpb.engine.layout import for_inference
    ours, _ = load_model(small_ckpt, "cpu", "fp32")
    params = dict(ours.named_parameters())
    modules = [type(m) for m in ours.modules()]
    ids = random_ids(ours.cfg.vocab_size, 4, 9, seed=11)
    with torch.no_grad():
        plain = ours(ids)
        fused = for_inference(ours, 0)(ids)
        packed_net = for_inference(ours, 36)        # 4 x 9 rows: the packed path itself
        packed = packed_net(ids)
        other = packed_net(ids[:3])                 # another row count falls back to the plain weight
    torch.testing.assert_close(fused, plain, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(packed, plain, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(other, plain[:3], atol=1e-4, rtol=1e-5)
    if torch.backends.mkl.is_available():
        assert packed_net.lm_head.packed is not None and packed_net.transformer.h[0].w_in.packed is not None
    # the shared model keeps its modules and its very parameters
    assert [type(m) for m in ours.modules()] == modules
    assert all(p is params[n] for n, p in ours.named_parameters()) and len(params) == len(list(ours.parameters()))
    # a model the loader did not lay out (built by hand) gets fused copies, same logits
    cfg = CodeGenConfig(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=4, rotary_dim=4)
    net = CodeGen(cfg).eval()
    with torch.no_grad():
        torch.testing.assert_close(for_inference(net, 8)(ids[:, :8] % 64), net(ids[:, :8] % 64), atol=1e-4, rtol=1e-5)


def test_fused_weights_are_views_of_the_parameters(small_ckpt):
    from mtpb.engine.layout import for_inference
    ours, _ = load_model(small_ckpt, "cpu", "fp32")
    E = ours.cfg.n_embd
    block, fused = ours.transformer.h[0], for_inference(ours, 0).transformer.h[0]
    assert fused.w_in.weight.data_ptr() == block.attn.qkv_proj.weight.data_ptr()
    assert fused.w_in.weight[3 * E:].data_ptr() == block.mlp.fc_in.weight.data_ptr()
    assert fused.w_out.weight.data_ptr() == block.attn.out_proj.weight.data_ptr()
    assert fused.w_out.weight[:, E:].data_ptr() == block.mlp.fc_out.weight.data_ptr()
    names = {n for n, _ in ours.named_parameters()}
    assert "transformer.h.0.attn.qkv_proj.weight" in names and "transformer.h.0.mlp.fc_out.bias" in names
    total = sum(p.numel() for p in ours.parameters())
    assert total == sum(p.numel() for p in hf_model(small_ckpt).parameters())
