"""Folded text batches: BERT on real tokens only gives the padded, masked batch's states and gradients."""

from __future__ import annotations

import pytest
import torch

from tests.models.model_helpers import build_tiny
from pir.models import folding


def ragged_batch(lengths, vocab: int = 100, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    mask = (torch.arange(int(lengths.max())) < lengths[:, None]).long()
    return torch.randint(5, vocab, mask.shape, generator=gen) * mask, mask


def test_fold_places_every_token_once_two_captions_a_row():
    ids, mask = ragged_batch([12, 3, 9, 12, 5, 7, 4])            # odd: the middle caption rides alone
    folded = folding.fold_captions(ids, mask)
    rows, width = folded.input_ids.shape
    assert rows == 4 and rows * width < mask.numel()
    assert len(folded.caption) == mask.sum()
    assert len(set(zip(folded.row.tolist(), folded.slot.tolist()))) == len(folded.caption)   # no two share a slot
    assert torch.equal(folded.input_ids[folded.row, folded.slot], ids[folded.caption, folded.column])
    assert torch.equal(folded.position_ids[folded.row, folded.slot], folded.column)
    per_row = torch.zeros(rows, dtype=torch.long).index_add_(0, folded.row, torch.ones_like(folded.row))
    assert per_row.tolist() == [12 + 3, 12 + 4, 9 + 5, 7]       # longest with shortest, and so on
    # within a row, a token may attend to exactly its own caption's tokens
    same_caption = folded.caption[:, None] == folded.caption[None, :]
    same_row = folded.row[:, None] == folded.row[None, :]
    visible = folded.attend[folded.row[:, None], 0, folded.slot[:, None], folded.slot[None, :]]
    assert torch.equal(visible & same_row, same_caption)


def test_fold_declines_when_it_saves_nothing():
    ids, mask = ragged_batch([6, 6, 6, 6])
    assert folding.fold_captions(ids, mask) is None


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_folded_states_and_gradients_match_the_padded_batch(implementation):
    model = build_tiny().eval()                                  # eval: no dropout, so both runs are comparable
    bert = model.text_encoder
    bert.set_attn_implementation(implementation)
    ids, mask = ragged_batch([11, 2, 7, 12, 4, 9], vocab=model.cfg.vocab_size, seed=3)
    weights = torch.randn(*mask.shape, bert.config.hidden_size, generator=torch.Generator().manual_seed(1))
    params = [p for p in bert.parameters() if p.requires_grad]
    real = mask[..., None].float()

    def states_and_grads(run):
        states = run()
        return states, torch.autograd.grad((states * real * weights).sum(), params)
    padded, padded_grads = states_and_grads(lambda: bert(input_ids=ids, attention_mask=mask).last_hidden_state)
    folded, folded_grads = states_and_grads(lambda: folding.folded_bert_states(bert, ids, mask))
    torch.testing.assert_close(folded * real, padded * real, atol=1e-5, rtol=1e-5)
    assert (folded[mask == 0] == 0).all()
    for folded_grad, padded_grad in zip(folded_grads, padded_grads):
        torch.testing.assert_close(folded_grad, padded_grad, atol=1e-5, rtol=1e-4)


def test_model_text_embeddings_do_not_depend_on_folding():
    ids, mask = ragged_batch([10, 3, 8, 12, 5, 6], vocab=1000, seed=4)
    folded_model, padded_model = build_tiny(seed=2).eval(), build_tiny(seed=2, fold_text=False).eval()
    with torch.no_grad():
        torch.testing.assert_close(folded_model.encode_text(ids, mask), padded_model.encode_text(ids, mask),
                                   atol=1e-5, rtol=0)


def test_folding_needs_a_mask_on_the_cpu():
    bert = build_tiny().text_encoder
    _, mask = ragged_batch([4, 2])
    assert folding.can_fold(bert, mask)
    assert not folding.can_fold(bert, None)                      # text_mask off: padding must be computed
    assert not folding.can_fold(bert, mask.to("meta"))           # device tensors keep their steps sync-free
