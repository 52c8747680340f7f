"""CharGPT: a small decoder-only transformer that predicts the next character (Tiny Shakespeare).

The same architecture as GPT-2 and nanoGPT, cut down so a laptop CPU can train and prune it::

    x = tok_emb(idx) + pos_emb(position)                    # (B, T, d)
    for block in blocks:                                    # pre-LayerNorm residual blocks
        x = x + block.attn(block.ln1(x))                    # causal self-attention, n_head heads
        x = x + block.mlp(block.ln2(x))                     # fc1 (d -> 4d), GELU, fc2 (4d -> d)
    logits = lm_head(ln_f(x))                               # (B, T, vocab), untied from tok_emb

Every weight a pruning method touches is an ``nn.Linear`` with a readable name:
``blocks.<i>.attn.query/key/value/out`` and ``blocks.<i>.mlp.fc1/fc2``, plus ``lm_head``.
Query, key and value are separate layers (not one fused ``c_attn`` as in GPT-2) so that
removing a head is "drop these rows of query, key and value and these columns of out".
A head's width ``head_dim`` is fixed; ``n_head`` is whatever the query layer holds, so a model
whose heads were removed still runs.

Example:
    >>> model = CharGPT()
    >>> model(torch.zeros(2, 16, dtype=torch.long)).shape
    torch.Size([2, 16, 65])
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t attends to positions <= t.

    Args:
        d_model: width of the residual stream.
        n_head: number of heads, each ``head_dim`` wide (query/key/value map d_model -> n_head * head_dim).
        head_dim: width of one head.
        dropout: on the attention weights and the output (training only).
    """

    def __init__(self, d_model: int, n_head: int, head_dim: int, dropout: float = 0.0):
        super().__init__()
        self.head_dim, self.dropout = head_dim, dropout
        self.query = nn.Linear(d_model, n_head * head_dim)
        self.key = nn.Linear(d_model, n_head * head_dim)
        self.value = nn.Linear(d_model, n_head * head_dim)
        self.out = nn.Linear(n_head * head_dim, d_model)
        self.out_dropout = nn.Dropout(dropout)

    @property
    def n_head(self) -> int:
        """Heads currently held (fewer after head removal)."""
        return self.query.out_features // self.head_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, d_model) -> (B, T, d_model)."""
        B, T, _ = x.shape
        # (B, T, H * hd) -> (B, H, T, hd): each head attends on its own slice of the features.
        q, k, v = (layer(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
                   for layer in (self.query, self.key, self.value))
        # softmax(q k^T / sqrt(hd) + causal mask) v, in one fused kernel.
        heads = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                               dropout_p=self.dropout if self.training else 0.0)
        # Concatenate the heads again: (B, H, T, hd) -> (B, T, H * hd); out mixes them.
        return self.out_dropout(self.out(heads.transpose(1, 2).reshape(B, T, -1)))


class MLP(nn.Module):
    """Position-wise feed-forward layer: fc1 (d -> hidden), GELU, fc2 (hidden -> d)."""

    def __init__(self, d_model: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(d_model, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.act(self.fc1(x))))


class Block(nn.Module):
    """One pre-LayerNorm transformer block: ``x + attn(ln1 x)``, then ``x + mlp(ln2 x)``."""

    def __init__(self, d_model: int, n_head: int, head_dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_head, head_dim, dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model, hidden, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class CharGPT(nn.Module):
    """A character-level GPT: token and position embeddings, ``n_layer`` blocks, a final LayerNorm, ``lm_head``.

    Args:
        vocab_size: number of distinct characters (65 for Tiny Shakespeare).
        block_size: longest context the position embedding covers.
        n_layer, n_head, d_model: depth, heads per block, width (head_dim = d_model // n_head).
        dropout: used while training only.

    The default size has 3.2 M parameters. ``forward(idx)`` maps token ids (B, T) to logits (B, T, vocab).
    """

    def __init__(self, vocab_size: int = 65, block_size: int = 128, n_layer: int = 4, n_head: int = 8,
                 d_model: int = 256, dropout: float = 0.1):
        super().__init__()
        if d_model % n_head:
            raise ValueError(f"d_model ({d_model}) must be a multiple of n_head ({n_head})")
        self.block_size = block_size
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(block_size, d_model)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*[Block(d_model, n_head, d_model // n_head, 4 * d_model, dropout)
                                      for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # GPT-2's initialisation: small normal weights, zero biases (trains faster than PyTorch's default).
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) int64 with T <= block_size -> logits (B, T, vocab_size)."""
        T = idx.shape[1]
        if T > self.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than block_size={self.block_size}")
        position = torch.arange(T, device=idx.device)
        x = self.dropout(self.tok_emb(idx) + self.pos_emb(position))
        return self.lm_head(self.ln_f(self.blocks(x)))

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Extend ``idx`` (B, T) by sampling ``max_new_tokens`` characters, one at a time.

        Pass a seeded ``torch.Generator`` to get the same text every time.
        """
        was_training = self.training
        self.eval()
        for _ in range(max_new_tokens):
            logits = self(idx[:, -self.block_size:])[:, -1, :] / temperature
            probs = F.softmax(logits.float(), dim=-1)
            idx = torch.cat([idx, torch.multinomial(probs, 1, generator=generator)], dim=1)
        self.train(was_training)
        return idx
