"""Per-layer train-time cost of the two convolution lowerings, measured side by side in one process.

For each layer shape of the MNIST CNNs, times forward and forward+backward (gradients for input and
kernel) of `jaxdl.nn.conv.conv2d` with ``implementation="xla"`` and ``"patches"``; prints ms and the
speed-up xla/patches. Then the same for depthwise convolutions (EfficientNet-Lite0's layers on 96x96
inputs, batch 50: XLA's grouped convolution against weighted shifted views). Run:
``python -m benchmarks.conv_lowering``.
"""

from __future__ import annotations

import platform
import statistics
import time

import jax
import jax.numpy as jnp

from jaxdl.nn.conv import conv2d

LAYERS = [  # (batch, image side, in channels, out channels, kernel)
    (128, 28, 1, 16, 3), (128, 14, 16, 32, 3), (128, 7, 32, 64, 3),
    (128, 28, 1, 32, 3), (128, 14, 32, 64, 3), (128, 28, 32, 32, 3),
    (128, 28, 1, 6, 5), (128, 14, 6, 16, 5),
]
DEPTHWISE_LAYERS = [  # (batch, image side, channels, kernel, stride)
    (50, 48, 96, 3, 2), (50, 24, 144, 3, 1), (50, 24, 144, 5, 2), (50, 12, 240, 5, 1), (50, 6, 480, 3, 1),
    (50, 6, 672, 5, 2), (50, 3, 1152, 5, 1),
]


def _median_ms(fn, *args, repeats: int = 5, blocks: int = 3) -> float:
    jax.block_until_ready(fn(*args))  # compile outside the timing
    times = []
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(repeats):
            out = fn(*args)
        jax.block_until_ready(out)
        times.append((time.perf_counter() - start) / repeats * 1e3)
    return statistics.median(times)


def main() -> None:
    print(f"# conv lowering, {platform.processor() or platform.machine()}, jax {jax.__version__}, "
          f"backend {jax.default_backend()}, {jax.device_count()} device(s)")
    print(f"{'layer':28s} {'xla fwd':>8s} {'patches fwd':>12s} {'xla train':>10s} {'patches train':>14s} {'speed-up':>9s}")
    key = jax.random.PRNGKey(0)
    for b, side, cin, cout, k in LAYERS:
        x = jax.random.normal(key, (b, side, side, cin))
        w = jax.random.normal(key, (k, k, cin, cout))
        row = {}
        for impl in ("xla", "patches"):
            fwd = jax.jit(lambda x, w, impl=impl: conv2d(x, w, 1, "SAME", implementation=impl))
            grad = jax.jit(jax.grad(lambda x, w, impl=impl: jnp.sum(conv2d(x, w, 1, "SAME", implementation=impl) ** 2),
                                    argnums=(0, 1)))
            row[impl] = (_median_ms(fwd, x, w), _median_ms(grad, x, w))
        label = f"{b}x{side}x{side}x{cin} -> {cout} k{k}"
        _print_row(label, row)
    print(f"{'depthwise layer':28s} {'xla fwd':>8s} {'shifts fwd':>12s} {'xla train':>10s} {'shifts train':>14s} {'speed-up':>9s}")
    for b, side, c, k, stride in DEPTHWISE_LAYERS:
        x = jax.random.normal(key, (b, side, side, c))
        w = jax.random.normal(key, (k, k, 1, c))
        row = {}
        for impl in ("xla", "patches"):
            def conv(x, w, impl=impl):
                return conv2d(x, w, stride, "SAME", implementation=impl, depthwise=True)
            row[impl] = (_median_ms(jax.jit(conv), x, w),
                         _median_ms(jax.jit(jax.grad(lambda x, w, conv=conv: jnp.sum(conv(x, w) ** 2), argnums=(0, 1))), x, w))
        _print_row(f"{b}x{side}x{side}x{c} k{k} s{stride}", row)


def _print_row(label: str, row: dict) -> None:
    print(f"{label:28s} {row['xla'][0]:8.1f} {row['patches'][0]:12.1f} {row['xla'][1]:10.1f} "
          f"{row['patches'][1]:14.1f} {row['xla'][1] / row['patches'][1]:8.2f}x", flush=True)


if __name__ == "__main__":
    main()
