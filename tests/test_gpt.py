"""models.GPT: config round trip, tied weights, KV-cache decoding equal to the full
causal forward (every position encoding, GQA), ragged batches in one cache equal to each
row alone, batched generation with ragged prompts, sampling, training, errors."""

import numpy as np
import pytest

import dlkern
import dlkern.nn.functional as F
from dlkern import optim
from dlkern.models import GPT


def small(pos_encoding="learned", **kw):
    dlkern.manual_seed(0)
    args = dict(vocab_size=13, block_size=16, n_layer=2, n_head=4, d_model=16, pos_encoding=pos_encoding)
    args.update(kw)
    return GPT(**args)


@pytest.fixture
def rng():
    return np.random.default_rng(5)


def test_config_rebuilds_and_state_dict_loads(rng):
    g = small("rope", n_kv_head=2, bias=False)
    g2 = GPT(**g.config)
    assert g2.config == g.config
    g2.load_state_dict(g.state_dict())
    idx = rng.integers(0, 13, (2, 7))
    np.testing.assert_array_equal(g(idx).data, g2(idx).data)
    assert g.config["dtype"] == "float32" and g.config["n_kv_head"] == 2


def test_tied_weights_share_one_parameter_and_accumulate(rng):
    g = small(dtype=np.float64)
    assert g.lm_head.weight is g.wte.weight
    names = [n for n, _ in g.named_parameters()]
    assert "wte.weight" in names and "lm_head.weight" not in names
    untied = small(tie_weights=False, dtype=np.float64)
    assert untied.lm_head.weight is not untied.wte.weight
    assert len(list(untied.parameters())) == len(list(g.parameters())) + 1
    untied.load_state_dict(g.state_dict())
    idx = rng.integers(0, 13, (2, 6))
    g(idx).sum().backward()
    untied(idx).sum().backward()
    np.testing.assert_allclose(g.wte.weight.grad.data,
                               untied.wte.weight.grad.data + untied.lm_head.weight.grad.data, rtol=1e-12)


def test_gpt_init_like_gpt2():
    g = GPT(50, block_size=64, n_layer=4, n_head=4, d_model=64)
    std = lambda p: float(p.data.std())  # noqa: E731
    assert abs(std(g.wte.weight) - 0.02) < 0.002
    assert abs(std(g.blocks[0].mlp[0].weight) - 0.02) < 0.002
    assert abs(std(g.blocks[0].attn.out_proj.weight) - 0.02 / np.sqrt(8)) < 0.001
    assert abs(std(g.blocks[1].mlp[2].weight) - 0.02 / np.sqrt(8)) < 0.001
    assert np.all(g.blocks[0].attn.in_proj_bias.data == 0)


@pytest.mark.parametrize("pos, kv", [("learned", None), ("rope", None), ("rope", 2), ("learned", 1),
                                     ("sinusoidal", None), ("alibi", 2)])
def test_cached_decoding_equals_full_forward(rng, pos, kv):
    g = small(pos, n_kv_head=kv)
    idx = rng.integers(0, 13, (3, 11))
    full = g(idx).data
    caches = g.make_cache(3)
    assert len(caches) == 2 and caches[0].k.shape == (3, kv or 4, 16, 4)
    with dlkern.no_grad():
        parts = [g(idx[:, :5], cache=caches).data]
        parts += [g(idx[:, i:i + 1], cache=caches).data for i in range(5, 11)]
    np.testing.assert_allclose(np.concatenate(parts, 1), full, rtol=1e-4, atol=1e-5)
    assert caches[0].offset == 11
    # a ragged batch: each row right-aligned in the cache (KVCache.start) gives its own logits
    lengths = np.array([11, 4, 7])
    start = 11 - lengths
    ragged = np.stack([np.concatenate([np.zeros(s, idx.dtype), idx[r, :n]]) for r, (s, n) in
                       enumerate(zip(start, lengths))])
    caches = g.make_cache(3)
    for c in caches:
        c.start = start
    with dlkern.no_grad():
        parts = [g(ragged[:, :8], cache=caches).data] + [g(ragged[:, i:i + 1], cache=caches).data
                                                          for i in range(8, 11)]
    got = np.concatenate(parts, 1)
    for r, (s, n) in enumerate(zip(start, lengths)):
        np.testing.assert_allclose(got[r, s:], g(idx[r:r + 1, :n]).data[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pos", ["learned", "rope", "alibi"])
def test_batched_generation_with_ragged_prompts_equals_single(rng, pos):
    g = small(pos, n_kv_head=2)
    lengths = [3, 8, 1, 5]
    idx = rng.integers(0, 13, (4, 8))
    out = g.generate(idx, 7, temperature=0, prompt_lengths=lengths)
    assert out.shape == (4, 15) and out.dtype == np.int64
    for b, n in enumerate(lengths):
        alone = g.generate(idx[b:b + 1, :n], 7, temperature=0)
        np.testing.assert_array_equal(out[b, :n + 7], alone[0])
        np.testing.assert_array_equal(out[b, n + 7:], 0)
    # generation is greedy decoding of the Tensor forward
    seq = idx[1:2, :8]
    for _ in range(3):
        seq = np.concatenate([seq, g(seq).data[:, -1].argmax(-1)[:, None]], 1)
    np.testing.assert_array_equal(out[1, :11], seq[0])


def test_sampling_top_k_and_rng(rng):
    g = small()
    idx = rng.integers(0, 13, (2, 3))
    a = g.generate(idx, 6, temperature=1.0, rng=11)
    b = g.generate(idx, 6, temperature=1.0, rng=np.random.default_rng(11))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[:, :3], idx)
    assert a.min() >= 0 and a.max() < 13
    np.testing.assert_array_equal(g.generate(idx, 5, top_k=1), g.generate(idx, 5, temperature=0))
    dlkern.manual_seed(4)
    c = g.generate(idx, 6, temperature=0.8, top_k=3)
    dlkern.manual_seed(4)
    np.testing.assert_array_equal(c, g.generate(idx, 6, temperature=0.8, top_k=3))
    assert g.generate(idx, 0).shape == (2, 3)


def test_gpt_loss_falls_with_adamw():
    text = "the quick brown fox jumps over the lazy dog. " * 20
    vocab = sorted(set(text))
    data = np.array([vocab.index(c) for c in text])
    dlkern.manual_seed(0)
    g = GPT(len(vocab), block_size=32, n_layer=2, n_head=2, d_model=32)
    opt = optim.AdamW(g.parameters(), lr=3e-3, weight_decay=0.0)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(40):
        starts = rng.integers(0, len(data) - 33, 8)
        batch = np.stack([data[s:s + 33] for s in starts])
        opt.zero_grad()
        logits = g(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, len(vocab)), batch[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 2.5
    assert np.mean(losses[-5:]) < 0.5 * losses[0], losses


def test_gpt_dropout_trains_and_eval_is_deterministic(rng):
    g = small(dropout=0.2)
    idx = rng.integers(0, 13, (2, 6))
    g(idx).sum().backward()
    assert g.wte.weight.grad is not None
    g.eval()
    np.testing.assert_array_equal(g(idx).data, g(idx).data)


def test_gpt_errors(rng):
    g = small()
    with pytest.raises(ValueError, match="block_size=16"):
        g(rng.integers(0, 13, (1, 17)))
    with pytest.raises(ValueError, match="exceeds block_size=16"):
        g.generate(rng.integers(0, 13, (1, 10)), 7)
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 13\)"):
        g(np.array([[1, 13]]))
    with pytest.raises(ValueError, match="int array"):
        g(np.zeros((2, 3), np.float32))
    caches = g.make_cache(1, max_seq_len=4)
    with dlkern.no_grad():
        g(rng.integers(0, 13, (1, 3)), cache=caches)
        with pytest.raises(ValueError, match="max_seq_len=4"):
            g(rng.integers(0, 13, (1, 2)), cache=caches)
    with pytest.raises(ValueError, match="prompt_lengths"):
        g.generate(rng.integers(0, 13, (2, 3)), 2, prompt_lengths=[0, 3])
    with pytest.raises(ValueError, match="pos_encoding"):
        GPT(10, pos_encoding="relative")
    with pytest.raises(ValueError, match="n_kv_head"):
        GPT(10, n_head=6, n_kv_head=4)
    # RoPE positions are not bounded by a table: generation may run past block_size
    r = small("rope")
    assert r.generate(rng.integers(0, 13, (1, 10)), 10, temperature=0).shape == (1, 20)
