"""A character-level recurrent language model: embedding -> LSTM or GRU (num_layers,
hidden_size) -> linear head, trained by ``python -m dlkern train --model lstm|gru``.

Unlike the GPT it has no context limit: ``generate`` runs the prompt through the network
once and then feeds one sampled token per step, carrying the recurrent state (h, and c
for the LSTM) instead of a KV cache, so each new token costs the same whatever the length.
"""

import numpy as np

from .. import nn
from ..autograd import no_grad
from ..device import array_namespace
from ..dtypes import as_dtype as _as_dtype
from ..tensor import Tensor
from .gpt import _generate_args, _sample

__all__ = ["RNNLM"]

_CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


class RNNLM(nn.Module):
    """RNNLM(vocab_size, d_model=128, hidden_size=256, num_layers=2, cell="lstm"|"gru",
    dropout=0.0, dtype=np.float32).

    ``model(idx)``: logits (B, T, vocab) for int tokens idx (B, T), from a zero state.
    ``model(idx, state, return_state=True)``: (logits, state) where state is the
    recurrent state after the last step (LSTM: (h, c); GRU: h; each (num_layers, B,
    hidden_size)), to continue a sequence where it stopped. dropout: on the embeddings,
    between the recurrent layers and before the head (training only). The recurrent
    layers are initialised as PyTorch's (uniform +-1/sqrt(hidden_size), forget-gate bias
    0), the embedding N(0, 1) and the head as nn.Linear. ``RNNLM(**model.config)``
    rebuilds the architecture.
    """

    def __init__(self, vocab_size, d_model=128, hidden_size=256, num_layers=2, cell="lstm", dropout=0.0,
                 dtype=np.float32):
        super().__init__()
        if cell not in _CELLS:
            raise ValueError(f"RNNLM: cell must be one of {tuple(_CELLS)}, got {cell!r}")
        for name, value in (("vocab_size", vocab_size), ("d_model", d_model), ("hidden_size", hidden_size),
                            ("num_layers", num_layers)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"RNNLM: {name} must be an int >= 1, got {value!r}")
        dt = _as_dtype(dtype) or np.dtype(np.float32)
        self.config = dict(vocab_size=int(vocab_size), d_model=int(d_model), hidden_size=int(hidden_size),
                           num_layers=int(num_layers), cell=cell, dropout=float(dropout), dtype=dt.name)
        self.vocab_size, self.cell = int(vocab_size), cell
        self.wte = nn.Embedding(vocab_size, d_model, dtype=dt)
        self.drop = nn.Dropout(dropout)
        self.rnn = _CELLS[cell](d_model, hidden_size, num_layers, batch_first=True,
                                dropout=dropout if num_layers > 1 else 0.0, dtype=dt)
        self.lm_head = nn.Linear(hidden_size, vocab_size, dtype=dt)

    def _tokens(self, idx):
        a = idx.data if isinstance(idx, Tensor) else np.asarray(idx)
        if a.ndim != 2 or a.dtype.kind not in "iu":
            raise ValueError(f"RNNLM: idx must be an int array (batch, seq), got shape {a.shape} dtype {a.dtype}")
        bounds = array_namespace(a).host_bounds(a)   # (device tokens: the embedding's gather checks them)
        if bounds is not None and (bounds[0] < 0 or bounds[1] >= self.vocab_size):
            raise ValueError(f"RNNLM: token ids must be in [0, {self.vocab_size}), got min {bounds[0]} "
                             f"max {bounds[1]}")
        return a

    def forward(self, idx, state=None, return_state=False):
        logits, state = self._forward(self._tokens(idx), state)
        return (logits, state) if return_state else logits

    def _forward(self, tokens, state):
        out, state = self.rnn(self.drop(self.wte(tokens)), state)
        return self.lm_head(self.drop(out)), state

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, rng=None):
        """Continue each prompt by max_new_tokens tokens -> int64 array (B, T0 + max_new_tokens).

        idx (B, T0) int tokens, T0 >= 1. temperature 0 is greedy (argmax); otherwise
        logits / temperature are sampled, from the top_k most likely tokens if top_k is
        given (the GPT's sampler). rng: a numpy Generator or seed (default: dlkern's
        generator). Runs under no_grad on the model's device: the prompt in one forward,
        then one step per new token from the carried state; only each step's logits
        (B, vocab) come to the host to be sampled. The model's training flag is kept
        (call eval() first to sample without dropout).
        """
        device = self.wte.weight.device
        prompts = self._tokens(idx.cpu() if isinstance(idx, Tensor) else idx)
        b, t0 = prompts.shape
        rng = _generate_args("RNNLM", t0, max_new_tokens, temperature, top_k, rng)
        out = np.zeros((b, t0 + max_new_tokens), np.int64)
        out[:, :t0] = prompts
        if max_new_tokens == 0:
            return out
        with no_grad():
            logits, state = self._forward(prompts.astype(np.int64), None)
            for step in range(max_new_tokens):
                nxt = _sample(device.to_host(logits.data[:, -1]), temperature, top_k, rng)
                out[:, t0 + step] = nxt
                if step + 1 < max_new_tokens:
                    logits, state = self._forward(nxt[:, None].astype(np.int64), state)
        return out
