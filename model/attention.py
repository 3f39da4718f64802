"""Transformer blocks for padded batches of variable-length sequences.

Everything here is independent of the emotion task. Tensors are batch-first,
``(batch, steps, width)``, and every sequence in a batch carries its own valid length; steps at
or after a sequence's length are padding and never influence the valid steps of any sequence.

The blocks follow the MulT-style transformer that AuxFormer uses (pre-norm layers, a final
LayerNorm, inputs scaled by ``sqrt(width)``, optional sinusoidal positions, embedding dropout),
with key padding masks added and the causal mask computed from each sequence's own lengths.

A sequence of length 0 (a missing modality) is attended as its first step, which the caller
fills with zeros: attention needs at least one key, and a zero step with no positional
embedding is what the reference feeds for a dropped modality.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def step_positions(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """Position numbers (batch, steps): 1, 2, ... for valid steps and 0 for padding.

    Numbering from 1 keeps 0 for padding, as the fairseq-derived reference does.
    """
    step_index = torch.arange(steps, device=lengths.device)
    valid = step_index[None, :] < lengths[:, None]
    return torch.where(valid, step_index[None, :] + 1, 0)


def sinusoidal_embedding(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embeddings (batch, steps, dim) of integer positions; position 0 embeds to zeros.

    The tensor2tensor layout the reference uses: the first half of the channels are sines and the
    second half cosines (not interleaved), frequencies ``10000 ** (-k / (dim // 2 - 1))``, and a
    trailing zero channel when ``dim`` is odd.
    """
    half_dim = dim // 2
    frequencies = torch.exp(
        torch.arange(half_dim, dtype=torch.float, device=positions.device) * -(math.log(10000) / (half_dim - 1))
    )
    angles = positions.float()[..., None] * frequencies
    embedding = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
    if dim % 2 == 1:
        embedding = F.pad(embedding, (0, 1))
    return embedding.masked_fill((positions == 0)[..., None], 0.0)


def blocked_attention(
    query_lengths: torch.Tensor,
    key_lengths: torch.Tensor,
    query_steps: int,
    key_steps: int,
    causal: bool,
) -> torch.Tensor:
    """Boolean mask (batch, query_steps, key_steps), True where a query may not attend to a key.

    Keys past their sequence's length are blocked. The causal rule is the reference's, applied
    to each sequence's own lengths instead of the padded ones: query ``i`` sees keys
    ``j <= i + |key_length - query_length|``, so the last valid query of a cross-modal pair
    always sees every valid key.
    """
    query_lengths = query_lengths.clamp(min=1)
    key_lengths = key_lengths.clamp(min=1)
    query_index = torch.arange(query_steps, device=query_lengths.device)[None, :, None]
    key_index = torch.arange(key_steps, device=query_lengths.device)[None, None, :]
    blocked = key_index >= key_lengths[:, None, None]
    if causal:
        lookahead = (key_lengths - query_lengths).abs()[:, None, None]
        return blocked | (key_index > query_index + lookahead)
    return blocked.expand(-1, query_steps, -1)


class MultiheadAttention(nn.Module):
    """Scaled dot-product attention over ``num_heads`` heads, with a boolean block mask."""

    def __init__(self, width: int, num_heads: int, dropout: float):
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width {width} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = width // num_heads
        self.dropout = dropout
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.output = nn.Linear(width, width)
        self._init_like_torch_multihead_attention()

    def _init_like_torch_multihead_attention(self) -> None:
        # The reference uses torch.nn.MultiheadAttention: one Xavier-uniform draw over the packed
        # (3 * width, width) input projection, zero input and output biases.
        packed = torch.empty(3 * self.query.out_features, self.query.in_features)
        nn.init.xavier_uniform_(packed)
        with torch.no_grad():
            for projection, weight in zip((self.query, self.key, self.value), packed.chunk(3)):
                projection.weight.copy_(weight)
                projection.bias.zero_()
            self.output.bias.zero_()

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, blocked: torch.Tensor
    ) -> torch.Tensor:
        """query (B, Tq, width), key and value (B, Tk, width), blocked (B, Tq, Tk) -> (B, Tq, width).

        Every query row must leave at least one key unblocked (blocked_attention guarantees it).
        """
        # PyTorch's fused attention computes softmax(q k^T / sqrt(head_dim)) v with dropout on the
        # weights, as the reference's attention does, faster than the explicit form (README, "Performance").
        attended = F.scaled_dot_product_attention(
            self._split_heads(self.query(query)),
            self._split_heads(self.key(key)),
            self._split_heads(self.value(value)),
            attn_mask=~blocked[:, None],
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.output(self._merge_heads(attended))

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, steps, _ = x.shape
        return x.view(batch, steps, self.num_heads, self.head_dim).transpose(1, 2)

    def _merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, steps, _ = x.shape
        return x.transpose(1, 2).reshape(batch, steps, self.num_heads * self.head_dim)


class TransformerEncoderLayer(nn.Module):
    """Pre-norm layer: attention then a ReLU feed-forward (4x wide), each in a residual branch.

    Each branch computes ``branch(LayerNorm(x))`` with dropout on its output and adds it to
    ``x``. With ``learnable_residual`` the sum becomes ``a * x + (1 - a) * branch``, with one
    learnable scalar ``a`` per layer shared by both branches, drawn from U(0, 1) at start and not
    constrained afterwards (as in the reference). Keys and values of cross-modal attention are
    normalised by the same LayerNorm as the queries, again as in the reference.
    """

    def __init__(
        self,
        width: int,
        num_heads: int,
        attn_dropout: float,
        relu_dropout: float,
        res_dropout: float,
        learnable_residual: bool,
    ):
        super().__init__()
        self.relu_dropout = relu_dropout
        self.res_dropout = res_dropout
        self.attention_norm = nn.LayerNorm(width)
        self.attention = MultiheadAttention(width, num_heads, attn_dropout)
        self.feed_forward_norm = nn.LayerNorm(width)
        self.feed_forward_in = nn.Linear(width, 4 * width)
        self.feed_forward_out = nn.Linear(4 * width, width)
        nn.init.xavier_uniform_(self.feed_forward_in.weight)
        nn.init.zeros_(self.feed_forward_in.bias)
        nn.init.xavier_uniform_(self.feed_forward_out.weight)
        nn.init.zeros_(self.feed_forward_out.bias)
        self.residual_weight = nn.Parameter(torch.rand(1)) if learnable_residual else None

    def forward(
        self,
        x: torch.Tensor,
        blocked: torch.Tensor,
        keys: torch.Tensor | None = None,
        values: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (B, T, width); keys and values (B, Tk, width) for cross-modal attention, else None."""
        normed = self.attention_norm(x)
        if keys is None:
            attended = self.attention(normed, normed, normed, blocked)
        else:
            attended = self.attention(normed, self.attention_norm(keys), self.attention_norm(values), blocked)
        x = self._add_residual(x, F.dropout(attended, p=self.res_dropout, training=self.training))

        hidden = F.relu(self.feed_forward_in(self.feed_forward_norm(x)))
        hidden = F.dropout(hidden, p=self.relu_dropout, training=self.training)
        transformed = F.dropout(self.feed_forward_out(hidden), p=self.res_dropout, training=self.training)
        return self._add_residual(x, transformed)

    def _add_residual(self, residual: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        if self.residual_weight is None:
            return residual + branch
        return residual * self.residual_weight + branch * (1 - self.residual_weight)


class TransformerEncoder(nn.Module):
    """Input embedding, ``num_layers`` TransformerEncoderLayers and a final LayerNorm.

    The embedding multiplies the input by ``sqrt(width)``, adds sinusoidal positions when
    ``add_positions`` (unscaled, 0 on padding), and applies ``embed_dropout``. Given a
    ``context``, every layer attends from ``x`` to the embedded context (cross-modal attention);
    otherwise to ``x`` itself.
    """

    def __init__(
        self,
        width: int,
        num_heads: int,
        num_layers: int,
        *,
        attn_dropout: float,
        relu_dropout: float,
        res_dropout: float,
        embed_dropout: float,
        causal: bool,
        add_positions: bool,
        learnable_residual: bool = False,
    ):
        super().__init__()
        self.width = width
        self.embed_dropout = embed_dropout
        self.causal = causal
        self.add_positions = add_positions
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(width, num_heads, attn_dropout, relu_dropout, res_dropout, learnable_residual)
            for _ in range(num_layers)
        )
        self.final_norm = nn.LayerNorm(width)

    def forward(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor,
        context: torch.Tensor | None = None,
        context_lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (B, T, width) with lengths (B,); context (B, Tc, width) with context_lengths (B,).

        Returns (B, T, width); steps at or after a sequence's length hold unspecified values.
        """
        hidden = self._embed(x, lengths)
        if context is None:
            blocked = blocked_attention(lengths, lengths, x.shape[1], x.shape[1], self.causal)
            for layer in self.layers:
                hidden = layer(hidden, blocked)
        else:
            blocked = blocked_attention(lengths, context_lengths, x.shape[1], context.shape[1], self.causal)
            # Keys and values are embedded separately so that, in training, each gets its own
            # embedding-dropout draw, as in the reference.
            keys = self._embed(context, context_lengths)
            values = self._embed(context, context_lengths)
            for layer in self.layers:
                hidden = layer(hidden, blocked, keys, values)
        return self.final_norm(hidden)

    def _embed(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        embedded = x * math.sqrt(self.width)
        if self.add_positions:
            embedded = embedded + sinusoidal_embedding(step_positions(lengths, x.shape[1]), self.width).to(x.dtype)
        return F.dropout(embedded, p=self.embed_dropout, training=self.training)
