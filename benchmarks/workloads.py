"""The five benchmark workloads, each in three implementations of the same architecture and batch.

* ``jaxdl``: the library's model from the registry and its train step as `fit` compiles it
  (`make_train_step` + `Parallel.compile_train_step`: donated state, metrics computed in the step).
* ``flax``: the no-library baseline, a hand-written Linen module (``nn.Conv``, ``nn.OptimizedLSTMCell``,
  ``nn.MultiHeadDotProductAttention``...) and a plain ``jax.jit`` step with optax.
* ``torch``: the same network in PyTorch eager (optional: skipped where torch is absent).

Every implementation trains with Adam (learning rate 1e-3) on softmax cross-entropy, on the same synthetic
batch shapes. `parameter_count` lets a test check that the three really are one architecture.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

NUM_CLASSES = 10
LEARNING_RATE = 1e-3
STEPS_PER_EPOCH = 100  # what jaxdl's schedule and logging windows are built for


@dataclasses.dataclass(frozen=True)
class Workload:
    """One benchmark: input shape (without batch), batch size, and how each implementation builds its model."""

    name: str
    batch_size: int
    input_shape: tuple[int, ...]
    tokens: int | None  # vocabulary size when the inputs are token ids
    jaxdl_model: Callable[[], nn.Module]
    flax_model: Callable[[], nn.Module]
    torch_model: Callable[[], Any]
    torch_channels_first: bool = False  # PyTorch convolutions take NCHW: its batches are transposed once, up front
    train_flops: float | None = None  # per step, where XLA's count misses work (a scan's body is counted once)

    def batch(self, seed: int) -> dict[str, np.ndarray]:
        """A synthetic batch ``{"x", "y"}`` (token ids in ``[1, vocab)``: no padding)."""
        rng = np.random.default_rng(seed)
        shape = (self.batch_size, *self.input_shape)
        x = rng.integers(1, self.tokens, shape).astype(np.int32) if self.tokens else rng.standard_normal(shape).astype(np.float32)
        return {"x": x, "y": rng.integers(0, NUM_CLASSES, self.batch_size).astype(np.int32)}


# ---- hand-written Flax baselines -------------------------------------------------------------------------

class FlaxMLP(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = True):
        x = x.reshape(x.shape[0], -1)
        for width in (512, 512):
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(NUM_CLASSES)(x)


class FlaxLeNet5(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = True):
        x = nn.max_pool(nn.relu(nn.Conv(6, (5, 5), padding="SAME")(x)), (2, 2), (2, 2))
        x = nn.max_pool(nn.relu(nn.Conv(16, (5, 5), padding="VALID")(x)), (2, 2), (2, 2))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(84)(nn.relu(nn.Dense(120)(x))))
        return nn.Dense(NUM_CLASSES)(x)


class FlaxResidualBlock(nn.Module):
    features: int
    strides: int

    @nn.compact
    def __call__(self, x, train: bool):
        norm = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9)  # noqa: E731
        y = nn.Conv(self.features, (3, 3), self.strides, padding="SAME", use_bias=False)(x)
        y = nn.relu(norm()(y))
        y = norm()(nn.Conv(self.features, (3, 3), padding="SAME", use_bias=False)(y))
        if x.shape != y.shape:
            x = norm()(nn.Conv(self.features, (1, 1), self.strides, use_bias=False)(x))
        return nn.relu(x + y)


class FlaxResNet20(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = True):
        x = nn.Conv(16, (3, 3), padding="SAME", use_bias=False)(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
        for stage, width in enumerate((16, 32, 64)):
            for i in range(3):
                x = FlaxResidualBlock(width, 2 if stage and not i else 1)(x, train)
        return nn.Dense(NUM_CLASSES)(x.mean(axis=(1, 2)))


class FlaxLSTM(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = True):
        outputs = nn.RNN(nn.OptimizedLSTMCell(256))(x)
        return nn.Dense(NUM_CLASSES)(outputs[:, -1])


def sinusoidal_positions(length: int, d_model: int) -> np.ndarray:
    """The fixed sine/cosine position table ``[length, d_model]`` of Vaswani et al."""
    position = np.arange(length)[:, None]
    rates = np.exp(-math.log(10000.0) * np.arange(0, d_model, 2) / d_model)
    table = np.zeros((length, d_model), np.float32)
    table[:, 0::2], table[:, 1::2] = np.sin(position * rates), np.cos(position * rates)
    return table


class FlaxTransformer(nn.Module):
    vocab: int = 5000
    d_model: int = 128
    heads: int = 4
    mlp: int = 512
    layers: int = 2
    dropout: float = 0.1

    @nn.compact
    def __call__(self, tokens, train: bool = True):
        drop = lambda: nn.Dropout(self.dropout, deterministic=not train)  # noqa: E731
        x = nn.Embed(self.vocab, self.d_model)(tokens) * math.sqrt(self.d_model)
        x = drop()(x + sinusoidal_positions(tokens.shape[1], self.d_model)[None])
        for _ in range(self.layers):
            h = nn.LayerNorm()(x)
            x = x + drop()(nn.MultiHeadDotProductAttention(self.heads, deterministic=True)(h, h))
            h = nn.Dense(self.mlp)(nn.LayerNorm()(x))
            x = x + drop()(nn.Dense(self.d_model)(drop()(nn.gelu(h))))
        return nn.Dense(NUM_CLASSES)(nn.LayerNorm()(x).mean(axis=1))


# ---- PyTorch ---------------------------------------------------------------------------------------------

def _torch_mlp():
    from torch import nn as tnn

    return tnn.Sequential(tnn.Flatten(), tnn.Linear(784, 512), tnn.ReLU(), tnn.Linear(512, 512), tnn.ReLU(),
                          tnn.Linear(512, NUM_CLASSES))


def _torch_lenet5():
    from torch import nn as tnn

    return tnn.Sequential(tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Conv2d(6, 16, 5), tnn.ReLU(),
                          tnn.MaxPool2d(2), tnn.Flatten(), tnn.Linear(400, 120), tnn.ReLU(), tnn.Linear(120, 84), tnn.ReLU(),
                          tnn.Linear(84, NUM_CLASSES))


def _torch_resnet20():
    import torch
    from torch import nn as tnn

    class Block(tnn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.conv1, self.bn1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False), tnn.BatchNorm2d(cout)
            self.conv2, self.bn2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False), tnn.BatchNorm2d(cout)
            self.shortcut = (tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout))
                             if stride != 1 or cin != cout else tnn.Identity())

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))

    layers, cin = [tnn.Conv2d(3, 16, 3, 1, 1, bias=False), tnn.BatchNorm2d(16), tnn.ReLU()], 16
    for stage, width in enumerate((16, 32, 64)):
        for i in range(3):
            layers.append(Block(cin, width, 2 if stage and not i else 1))
            cin = width
    layers += [tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(64, NUM_CLASSES)]
    return tnn.Sequential(*layers)


def _torch_lstm():
    from torch import nn as tnn

    class LSTMClassifier(tnn.Module):
        def __init__(self):
            super().__init__()
            self.lstm, self.head = tnn.LSTM(32, 256, batch_first=True), tnn.Linear(256, NUM_CLASSES)

        def forward(self, x):
            return self.head(self.lstm(x)[0][:, -1])

    return LSTMClassifier()


def _torch_transformer():
    import torch
    from torch import nn as tnn

    class TransformerClassifier(tnn.Module):
        def __init__(self, vocab: int = 5000, d_model: int = 128, heads: int = 4, mlp: int = 512, layers: int = 2):
            super().__init__()
            self.d_model = d_model
            self.embed = tnn.Embedding(vocab, d_model)
            self.register_buffer("positions", torch.from_numpy(sinusoidal_positions(128, d_model)))
            layer = tnn.TransformerEncoderLayer(d_model, heads, mlp, dropout=0.1, activation="gelu", batch_first=True,
                                                norm_first=True)
            self.encoder = tnn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.dropout, self.norm, self.head = tnn.Dropout(0.1), tnn.LayerNorm(d_model), tnn.Linear(d_model, NUM_CLASSES)

        def forward(self, tokens):
            x = self.embed(tokens) * math.sqrt(self.d_model) + self.positions[:tokens.shape[1]]
            return self.head(self.norm(self.encoder(self.dropout(x))).mean(dim=1))

    return TransformerClassifier()


def _jaxdl(name: str, **kwargs) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from jaxdl.models import create_model

        return create_model(name, **kwargs)

    return build


WORKLOADS = {
    "mlp": Workload("MLP 784-512-512-10", 256, (28, 28, 1), None,
                    _jaxdl("mlp", hidden_sizes=(512, 512), num_outputs=NUM_CLASSES), FlaxMLP, _torch_mlp),
    "lenet5": Workload("LeNet-5 28x28x1", 128, (28, 28, 1), None, _jaxdl("lenet5", num_outputs=NUM_CLASSES),
                       FlaxLeNet5, _torch_lenet5, torch_channels_first=True),
    "resnet20": Workload("ResNet-20 32x32x3 + BatchNorm", 128, (32, 32, 3), None,
                         _jaxdl("resnet20", num_outputs=NUM_CLASSES), FlaxResNet20, _torch_resnet20,
                         torch_channels_first=True),
    "lstm": Workload("LSTM 32->256, length 100", 64, (100, 32), None,
                     _jaxdl("rnn_classifier", cell="lstm", hidden_size=256, pooling="last", num_outputs=NUM_CLASSES),
                     FlaxLSTM, _torch_lstm,
                     # 4 gates x (input + hidden) x hidden multiply-adds per step and example; training ~3x forward.
                     train_flops=3 * 2 * 64 * 100 * 4 * 256 * (32 + 256)),
    "transformer": Workload("Transformer 2x(d128, 4 heads, MLP 512), length 128, vocab 5000", 32, (128,), 5000,
                            _jaxdl("transformer_classifier", vocab_size=5000, max_length=128, d_model=128, num_heads=4,
                                   num_layers=2, mlp_dim=512, num_outputs=NUM_CLASSES), FlaxTransformer, _torch_transformer),
}


# ---- steps -----------------------------------------------------------------------------------------------

def jaxdl_step(workload: Workload, seed: int = 0) -> tuple[Callable, Any]:
    """jaxdl's compiled train step and initial state for ``workload``, built as `build_experiment` builds them."""
    from jaxdl.config import default_config
    from jaxdl.distributed.parallel import make_parallel
    from jaxdl.losses import softmax_cross_entropy
    from jaxdl.metrics import classification_metrics
    from jaxdl.training.optimizers import make_optimizer
    from jaxdl.training.state import create_train_state
    from jaxdl.training.step import make_train_step
    from jaxdl.training.step_norms import LogWindows

    model = workload.jaxdl_model()
    parallel = make_parallel("jit")
    tx, _ = make_optimizer({"name": "adam", "learning_rate": LEARNING_RATE}, STEPS_PER_EPOCH, 1)
    state = parallel.put_state(create_train_state(model, tx, workload.batch(seed)["x"][:1], seed))
    # The step's norms on each log line's step, at `jaxdl train`'s default logging interval.
    windows = LogWindows(default_config().train.log_every, STEPS_PER_EPOCH)
    step = parallel.compile_train_step(make_train_step(model, softmax_cross_entropy,
                                                       classification_metrics(NUM_CLASSES), tx, norms_at=windows))
    return step, state


@dataclasses.dataclass
class FlaxState:
    """The hand-written baseline's state: a plain pytree."""

    params: Any
    batch_stats: Any
    opt_state: Any
    key: jax.Array


jax.tree_util.register_dataclass(FlaxState, data_fields=["params", "batch_stats", "opt_state", "key"], meta_fields=[])


def flax_step(workload: Workload, seed: int = 0) -> tuple[Callable, FlaxState]:
    """A hand-written ``jax.jit`` train step (donated state) and its initial state for ``workload``."""
    model = workload.flax_model()
    tx = optax.adam(LEARNING_RATE)
    init_key, dropout_key = jax.random.split(jax.random.PRNGKey(seed))
    variables = model.init({"params": init_key, "dropout": dropout_key}, jnp.asarray(workload.batch(seed)["x"][:1]),
                           train=False)
    params, batch_stats = variables["params"], variables.get("batch_stats", {})

    def step(state: FlaxState, batch: dict[str, jax.Array]) -> tuple[FlaxState, jax.Array]:
        key, dropout = jax.random.split(state.key)

        def loss_fn(params):
            logits, updates = model.apply({"params": params, "batch_stats": state.batch_stats}, batch["x"], train=True,
                                          rngs={"dropout": dropout}, mutable=["batch_stats"])
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
            return loss, updates.get("batch_stats", {})

        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        return FlaxState(optax.apply_updates(state.params, updates), batch_stats, opt_state, key), loss

    return jax.jit(step, donate_argnums=0), FlaxState(params, batch_stats, tx.init(params), dropout_key)


def torch_step(workload: Workload, seed: int = 0) -> tuple[Callable, Any]:
    """A PyTorch eager train step ``step(batch) -> loss`` for ``workload`` (raises ImportError without torch)."""
    import torch

    torch.manual_seed(seed)
    model = workload.torch_model()
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(batch: dict[str, Any]) -> Any:
        """One update on ``batch`` (tensors from `torch_batch`)."""
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(batch["x"]), batch["y"])
        loss.backward()
        optimizer.step()
        return loss

    return step, model


def torch_batch(workload: Workload, seed: int) -> dict[str, Any]:
    """`Workload.batch` as PyTorch tensors in PyTorch's own layout (NCHW for convolutions, int64 labels)."""
    import torch

    batch = workload.batch(seed)
    x = batch["x"].transpose(0, 3, 1, 2) if workload.torch_channels_first else batch["x"]
    x = torch.from_numpy(np.ascontiguousarray(x))
    return {"x": x.long() if workload.tokens else x, "y": torch.from_numpy(batch["y"]).long()}


def parameter_count(tree_or_module: Any) -> int:
    """Trainable parameters of a params pytree or a PyTorch module."""
    if hasattr(tree_or_module, "parameters"):
        return sum(p.numel() for p in tree_or_module.parameters())
    return sum(int(np.size(leaf)) for leaf in jax.tree.leaves(tree_or_module))
