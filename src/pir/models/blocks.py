"""PIR's attention blocks (the "PAE" units of VIR and LCA), numerically the official ones.

Attribute names mirror the official code (``mhatt``/``mhatt_cross`` with
``linear_q/k/v/merge``, ``ffn.{0,1,3}``, ``norm1``, ``norm2``) so official
state dicts load by name.

Masks use the boolean convention of ``F.scaled_dot_product_attention``:
``True`` = this key may be attended to. (The official code passes the
opposite convention to ``masked_fill(mask, -1e9)``, but never passes a mask.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def build_mlp(dim: int) -> nn.Sequential:
    """FFN = Linear(D, 2D) - LayerNorm(2D) - GELU - Linear(2D, D) (keys ffn.0, ffn.1, ffn.3)."""
    return nn.Sequential(nn.Linear(dim, 2 * dim), nn.LayerNorm(2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))


class MultiHeadAttention(nn.Module):
    """Official MHAtt: per-head softmax(q k^T / sqrt(d_head)) with dropout on the attention map.

    Runs through the fused ``scaled_dot_product_attention``; its ``dropout_p``
    drops attention probabilities exactly where the official code applies
    ``nn.Dropout`` to the attention map.
    """

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"embed_dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.dropout = dropout
        self.linear_v = nn.Linear(dim, dim)
        self.linear_k = nn.Linear(dim, dim)
        self.linear_q = nn.Linear(dim, dim)
        self.linear_merge = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        return x.view(batch, length, self.heads, dim // self.heads).transpose(1, 2)

    def forward(self, v: torch.Tensor, k: torch.Tensor, q: torch.Tensor,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """v, k [B, Lk, D]; q [B, Lq, D]; key_mask bool [B, Lk] (True = real token) -> [B, Lq, D]."""
        attn_mask = None if key_mask is None else key_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(
            self._split(self.linear_q(q)), self._split(self.linear_k(k)), self._split(self.linear_v(v)),
            attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0)
        batch, _, length, _ = out.shape
        return self.linear_merge(out.transpose(1, 2).reshape(batch, length, -1))


class _PostNormBlock(nn.Module):
    """The shared post-norm tail: x = LN(x + Drop(update)); x = LN(x + Drop(FFN(x)))."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.ffn = build_mlp(dim)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim)

    def _residual(self, x: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout1(update))
        return self.norm2(x + self.dropout2(self.ffn(x)))


class SelfAttentionBlock(_PostNormBlock):
    """Official MHSA, post-norm: x = LN(x + Drop(MHA(x))); x = LN(x + Drop(FFN(x)))."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__(dim, dropout)
        self.mhatt = MultiHeadAttention(dim, heads, dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self._residual(x, self.mhatt(x, x, x, key_mask))


class CrossAttentionBlock(_PostNormBlock):
    """Official CroSA: queries from ``query``, keys/values and the residual from ``context``.

    context = LN(context + Drop(MHA(q=query, k=v=context))); then the FFN step.
    The output has the context's length, so ``query`` must have it too (VIR
    broadcasts its single instruction vector to every kept token, as the official code does).
    """

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__(dim, dropout)
        self.mhatt_cross = MultiHeadAttention(dim, heads, dropout)

    def forward(self, query: torch.Tensor, context: torch.Tensor,
                key_mask: torch.Tensor | None = None, first_only: bool = False) -> torch.Tensor:
        """-> [B, L, D]; with ``first_only``, just row 0 ([B, 1, D]) from ``query[:, :1]``.

        Every output row depends only on its own query and residual row (keys and values are
        the whole context), so when a caller reads nothing but row 0 (the last VIR / LCA
        block) the other rows' query projection, merge, FFN and norms are skipped: the same
        row 0, for about a quarter of the block's work.
        """
        residual = context[:, :1] if first_only else context
        return self._residual(residual, self.mhatt_cross(context, context, query[:, :1] if first_only else query,
                                                         key_mask))


def belief_filter(tokens: torch.Tensor, instruction: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """VIR's rank-and-filter: sort tokens by belief softmax(tokens . c), keep the ``keep`` best.

    tokens [B, N, D], instruction [B, D] -> (kept tokens [B, min(keep, N), D], belief [B, N]).
    One gather replaces the official per-sample index_select loop.
    """
    belief = torch.softmax(torch.einsum("bnd,bd->bn", tokens, instruction), dim=-1)
    order = torch.sort(belief, dim=1, descending=True).indices[:, :keep]
    kept = torch.gather(tokens, 1, order.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
    return kept, belief
