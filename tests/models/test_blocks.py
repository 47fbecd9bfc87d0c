"""PAE blocks: shapes, mask semantics, dropout placement, and the vectorised belief filter."""

from __future__ import annotations

import torch

from pir.models.blocks import CrossAttentionBlock, MultiHeadAttention, SelfAttentionBlock, belief_filter
from tests.models.pir_official_reference import RefMHAtt


def test_block_shapes():
    torch.manual_seed(0)
    x, query = torch.randn(3, 10, 32), torch.randn(3, 10, 32)
    assert SelfAttentionBlock(32, 4, 0.1)(x).shape == (3, 10, 32)
    assert CrossAttentionBlock(32, 4, 0.1)(query, x).shape == (3, 10, 32)
    assert MultiHeadAttention(32, 4, 0.0)(x, x, torch.randn(3, 1, 32)).shape == (3, 1, 32)


def test_cross_attention_first_only_is_row_zero_of_the_full_block():
    """Row 0 alone (the last VIR/LCA block) equals row 0 of the full block, values and gradients."""
    torch.manual_seed(0)
    block = CrossAttentionBlock(32, 4, 0.0)
    query, context = torch.randn(3, 10, 32), torch.randn(3, 10, 32, requires_grad=True)
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[0, 7:] = False
    full = block(query, context, mask)[:, :1]
    first = block(query, context, mask, first_only=True)
    assert first.shape == (3, 1, 32)
    torch.testing.assert_close(first, full, atol=1e-6, rtol=0)
    grads = [torch.autograd.grad(out.square().sum(), [context, *block.parameters()]) for out in (full, first)]
    for got, want in zip(grads[1], grads[0]):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_state_dict_uses_official_names():
    keys = set(CrossAttentionBlock(8, 2, 0.0).state_dict())
    assert {"mhatt_cross.linear_q.weight", "mhatt_cross.linear_merge.bias", "ffn.0.weight", "ffn.1.weight",
            "ffn.3.bias", "norm1.weight", "norm2.bias"} <= keys
    assert "mhatt.linear_v.weight" in SelfAttentionBlock(8, 2, 0.0).state_dict()


def test_key_mask_equals_official_masked_fill():
    """Our True=keep boolean mask (fused SDPA) equals the official masked_fill(~keep, -1e9)."""
    torch.manual_seed(0)
    ours = MultiHeadAttention(16, 4, 0.0).eval()
    ref = RefMHAtt(16, 4)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 6, 16)
    keep = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    torch.testing.assert_close(ours(x, x, x, keep), ref(x, x, x, ~keep[:, None, None, :]), atol=1e-6, rtol=0)


def test_masked_keys_do_not_matter():
    torch.manual_seed(0)
    block = SelfAttentionBlock(16, 4, 0.0).eval()
    x = torch.randn(1, 6, 16)
    changed = x.clone()
    changed[:, 4:] = torch.randn(1, 2, 16)
    keep = torch.tensor([[1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    torch.testing.assert_close(block(x, keep)[:, :4], block(changed, keep)[:, :4])
    assert not torch.allclose(block(x)[:, :4], block(changed)[:, :4])


def test_attention_dropout_only_in_training():
    torch.manual_seed(0)
    attn = MultiHeadAttention(16, 4, 0.5)
    x = torch.randn(2, 5, 16)
    attn.eval()
    torch.testing.assert_close(attn(x, x, x), attn(x, x, x))
    attn.train()
    assert not torch.allclose(attn(x, x, x), attn(x, x, x))


def test_belief_filter_equals_per_sample_loop():
    torch.manual_seed(0)
    tokens, instruction = torch.randn(4, 50, 8), torch.randn(4, 8)
    kept, belief = belief_filter(tokens, instruction, 40)
    assert kept.shape == (4, 40, 8)
    torch.testing.assert_close(belief.sum(1), torch.ones(4))
    for i in range(4):   # the official loop (index_select per sample), here only as the reference
        order = torch.sort(torch.softmax(tokens[i] @ instruction[i], 0), descending=True).indices
        torch.testing.assert_close(kept[i], torch.index_select(tokens[i], 0, order)[:40])
    assert belief_filter(tokens, instruction, 99)[0].shape == (4, 50, 8)
