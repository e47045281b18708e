"""State-dict conversion: a PyTorch layer's weights, converted by rules, give PyTorch's outputs in Flax.

Where torch is installed (the bench extra) each layer is compared with torch itself; everywhere, the
recurrent gate orders and the attention head split are compared with NumPy loops of PyTorch's documented
equations, on random weights in PyTorch's layouts.
"""

import importlib.util

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.nn.attention import MultiHeadAttention
from jaxdl.nn.recurrent import StackedRNN
from jaxdl.transfer.state_dict import convert_state_dict, read_weights_file

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed (bench extra)")


def _shapes(module, *inputs):
    return jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *inputs))


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def numpy_lstm(w, x, hidden):
    """PyTorch's LSTM equations (gates i, f, g, o; two biases), one layer, one direction."""
    h, c = np.zeros((x.shape[0], hidden)), np.zeros((x.shape[0], hidden))
    out = []
    for t in range(x.shape[1]):
        gates = x[:, t] @ w["weight_ih_l0"].T + w["bias_ih_l0"] + h @ w["weight_hh_l0"].T + w["bias_hh_l0"]
        i, f, g, o = np.split(gates, 4, axis=-1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        out.append(h)
    return np.stack(out, 1)


def numpy_gru(w, x, hidden):
    """PyTorch's GRU equations (gates r, z, n; b_hn inside the reset product)."""
    h = np.zeros((x.shape[0], hidden))
    out = []
    for t in range(x.shape[1]):
        xr, xz, xn = np.split(x[:, t] @ w["weight_ih_l0"].T + w["bias_ih_l0"], 3, axis=-1)
        hr, hz, hn = np.split(h @ w["weight_hh_l0"].T + w["bias_hh_l0"], 3, axis=-1)
        r, z = _sigmoid(xr + hr), _sigmoid(xz + hz)
        n = np.tanh(xn + r * hn)
        h = (1 - z) * n + z * h
        out.append(h)
    return np.stack(out, 1)


@settings(max_examples=6)
@given(cell=st.sampled_from(["lstm", "gru"]), features=st.integers(1, 5), hidden=st.integers(1, 6),
       time=st.integers(1, 5), seed=st.integers(0, 99))
def test_recurrent_weights_in_pytorchs_layout_follow_pytorchs_equations(cell, features, hidden, time, seed):
    rng = np.random.default_rng(seed)
    gates = 4 if cell == "lstm" else 3
    w = {"weight_ih_l0": rng.normal(size=(gates * hidden, features)), "weight_hh_l0": rng.normal(size=(gates * hidden, hidden)),
         "bias_ih_l0": rng.normal(size=gates * hidden), "bias_hh_l0": rng.normal(size=gates * hidden)}
    x = rng.normal(size=(2, time, features)).astype(np.float32)
    model = StackedRNN(cell=cell, hidden_size=hidden)
    variables = convert_state_dict({f"rnn.{k}": v for k, v in w.items()}, _shapes(model, x), {"rnn": "layer_{layer}/cell"})
    _, ours = model.apply(variables, x)
    reference = (numpy_lstm if cell == "lstm" else numpy_gru)(w, x.astype(np.float64), hidden)
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5)


def test_attention_heads_split_as_pytorch_splits_them():
    rng = np.random.default_rng(0)
    e, heads, t = 8, 2, 5
    w = {"in_proj_weight": rng.normal(size=(3 * e, e)), "in_proj_bias": rng.normal(size=3 * e),
         "out_proj.weight": rng.normal(size=(e, e)), "out_proj.bias": rng.normal(size=e)}
    x = rng.normal(size=(2, t, e)).astype(np.float32)
    model = MultiHeadAttention(num_heads=heads)
    variables = convert_state_dict({f"attn.{k}": v for k, v in w.items()}, _shapes(model, x), {"attn": ""})
    q, k, v = (x @ wp.T + bp for wp, bp in zip(np.split(w["in_proj_weight"], 3), np.split(w["in_proj_bias"], 3)))
    split = lambda a: a.reshape(2, t, heads, -1).transpose(0, 2, 1, 3)  # noqa: E731 - PyTorch's view(..., heads, hd)
    scores = split(q) @ split(k).transpose(0, 1, 3, 2) / np.sqrt(e // heads)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    context = (weights @ split(v)).transpose(0, 2, 1, 3).reshape(2, t, e)
    reference = context @ w["out_proj.weight"].T + w["out_proj.bias"]
    np.testing.assert_allclose(model.apply(variables, x), reference, rtol=1e-4, atol=1e-4)


def test_what_does_not_match_is_named():
    model = nn.Dense(3)
    reference = _shapes(model, jnp.zeros((1, 4)))
    good = {"fc.weight": np.zeros((3, 4)), "fc.bias": np.zeros(3)}
    with pytest.raises(ValueError, match=r"tensors no rule maps \['extra.weight'\]"):
        convert_state_dict({**good, "extra.weight": np.zeros(2)}, reference, {"fc": ""})
    with pytest.raises(ValueError, match=r"variables left unfilled \['params/bias'\]"):
        convert_state_dict({"fc.weight": np.zeros((3, 4))}, reference, {"fc": ""})
    with pytest.raises(ValueError, match=r"fc.weight -> params/kernel: needs \(4, 3\), got \(5, 3\)"):
        convert_state_dict({**good, "fc.weight": np.zeros((3, 5))}, reference, {"fc": ""})
    converted = convert_state_dict({**good, "extra.weight": np.zeros(2)}, reference, {"fc": ""}, ignored=(r"extra\..*",))
    assert jax.tree.map(np.shape, converted) == jax.tree.map(lambda a: a.shape, reference)


class TorchNet:
    """The torch side of the comparisons: every layer kind the converter knows, in one state dict."""

    def __init__(self):
        import torch

        torch.manual_seed(0)
        self.torch = torch
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.grouped = torch.nn.Conv2d(8, 8, 3, padding=1, groups=2, bias=False)
        self.bn = torch.nn.BatchNorm2d(8).eval()
        self.fc = torch.nn.Linear(8, 5)
        self.lstm = torch.nn.LSTM(5, 6, num_layers=2, bidirectional=True, batch_first=True)
        self.gru = torch.nn.GRU(5, 4, batch_first=True)
        self.attn = torch.nn.MultiheadAttention(8, 2, batch_first=True)
        with torch.no_grad():  # BatchNorm statistics other than the defaults, to see them carried
            self.bn.running_mean.uniform_(-1, 1)
            self.bn.running_var.uniform_(0.5, 2)
            self.bn.weight.uniform_(0.5, 2)


@needs_torch
def test_every_layer_kind_gives_pytorchs_outputs(tmp_path):
    import torch
    from safetensors.torch import save_file

    net = TorchNet()
    state = {f"{name}.{k}": v for name in ("conv", "grouped", "bn", "fc", "lstm", "gru", "attn")
             for k, v in getattr(net, name).state_dict().items()}
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "net.safetensors")
    torch.save(state, tmp_path / "net.pt")
    images = np.random.default_rng(1).normal(size=(2, 3, 9, 9)).astype(np.float32)
    series = np.random.default_rng(2).normal(size=(2, 7, 5)).astype(np.float32)
    tokens = np.random.default_rng(3).normal(size=(2, 4, 8)).astype(np.float32)

    class Net(nn.Module):
        @nn.compact
        def __call__(self, images, series, tokens):
            x = nn.Conv(8, (3, 3), strides=2, padding=((1, 1), (1, 1)), name="conv")(images)
            x = nn.Conv(8, (3, 3), padding=((1, 1), (1, 1)), feature_group_count=2, use_bias=False, name="grouped")(x)
            x = nn.BatchNorm(use_running_average=True, epsilon=1e-5, name="bn")(x)
            _, lstm = StackedRNN("lstm", 6, num_layers=2, bidirectional=True, name="lstm")(series)
            _, gru = StackedRNN("gru", 4, name="gru")(series)
            return x, nn.Dense(5, name="fc")(x.mean((1, 2))), lstm, gru, MultiHeadAttention(2, name="attn")(tokens)

    model = Net()
    inputs = (images.transpose(0, 2, 3, 1), series, tokens)
    rules = {"conv": "conv", "grouped": "grouped", "bn": "bn", "fc": "fc", "lstm": "lstm/layer_{layer}/{direction}/cell",
             "gru": "gru/layer_{layer}/cell", "attn": "attn"}
    with torch.no_grad():
        conv = net.bn(net.grouped(net.conv(torch.from_numpy(images))))
        expected = (conv.numpy().transpose(0, 2, 3, 1), net.fc(conv.mean((2, 3))).numpy(),
                    net.lstm(torch.from_numpy(series))[0].numpy(), net.gru(torch.from_numpy(series))[0].numpy(),
                    net.attn(*(torch.from_numpy(tokens),) * 3, need_weights=False)[0].numpy())
    for path in ("net.safetensors", "net.pt"):
        variables = convert_state_dict(read_weights_file(tmp_path / path), _shapes(model, *inputs), rules)
        for ours, theirs in zip(model.apply(variables, *inputs), expected):
            np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
