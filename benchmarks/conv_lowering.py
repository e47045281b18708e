"""Per-layer train-time cost of the two convolution lowerings, measured side by side in one process.

For each layer shape of the MNIST CNNs, times forward and forward+backward (gradients for input and
kernel) of `jaxdl.nn.conv.conv2d` under lowering ``"xla"`` and ``"patches"``; prints ms and the
speed-up xla/patches. Then the same for depthwise convolutions (EfficientNet-Lite0's layers on 96x96
inputs, batch 50: XLA's grouped convolution against weighted shifted views), and for transposed
convolutions (the U-Net's 2x2 and the DCGAN's 4x4 stride-2 layers: XLA's convolution of the dilated input
against `jaxdl.nn.conv_transpose`'s stride phases). Each row ends with what ``"auto"`` picks on this machine
for inference (forward) and for training (forward / input gradient / kernel gradient); `jaxdl.nn.lowering.tune`
measures it once and caches it. Run:
``python -m benchmarks.conv_lowering [--sections conv,depthwise,transposed]``.
"""

from __future__ import annotations

import argparse
import json
import platform

import jax
import jax.numpy as jnp

from jaxdl.nn import lowering
from jaxdl.nn.conv import conv2d
from jaxdl.nn.conv_transpose import conv_transpose2d
from jaxdl.nn.lowering import autotune
from jaxdl.nn.lowering.autotune import median_ms

LAYERS = [  # (batch, image side, in channels, out channels, kernel)
    (128, 28, 1, 16, 3), (128, 14, 16, 32, 3), (128, 7, 32, 64, 3),
    (128, 28, 1, 32, 3), (128, 14, 32, 64, 3), (128, 28, 32, 32, 3),
    (128, 28, 1, 6, 5), (128, 14, 6, 16, 5),
    (128, 32, 16, 16, 3), (128, 16, 32, 32, 3), (128, 8, 64, 64, 3),  # ResNet-20's three stages
]
DEPTHWISE_LAYERS = [  # (batch, image side, channels, kernel, stride)
    (50, 48, 96, 3, 2), (50, 24, 144, 3, 1), (50, 24, 144, 5, 2), (50, 12, 240, 5, 1), (50, 6, 480, 3, 1),
    (50, 6, 672, 5, 2), (50, 3, 1152, 5, 1),
]
TRANSPOSED_LAYERS = [  # (batch, image side, in channels, out channels, kernel), all stride 2 "SAME"
    (32, 8, 64, 32, 2), (32, 16, 32, 16, 2), (32, 32, 16, 16, 2),
    (64, 7, 64, 32, 4), (64, 7, 128, 64, 4), (64, 14, 32, 8, 4), (64, 14, 32, 2, 4), (64, 14, 32, 1, 4),
]


SECTIONS = ("conv", "depthwise", "transposed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, from {list(SECTIONS)}")
    sections = parser.parse_args().sections.split(",")
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; valid ones are {list(SECTIONS)}")
    print(f"# conv lowering, {platform.processor() or platform.machine()}, jax {jax.__version__}, "
          f"backend {jax.default_backend()}, {jax.device_count()} device(s)")
    key = jax.random.PRNGKey(0)
    if "conv" in sections:
        print(f"{'layer':28s} {'xla fwd':>8s} {'patches fwd':>12s} {'xla train':>10s} {'patches train':>14s} {'speed-up':>9s} {'auto train':>10s}  auto picks")
        for b, side, cin, cout, k in LAYERS:
            x = jax.random.normal(key, (b, side, side, cin))
            w = jax.random.normal(key, (k, k, cin, cout))
            conv = lambda x, w: conv2d(x, w, 1, "SAME")  # noqa: E731
            _print_row(f"{b}x{side}x{side}x{cin} -> {cout} k{k}", _time_both(conv, x, w), _picked(conv, x, w))
    if "depthwise" in sections:
        print(f"{'depthwise layer':28s} {'xla fwd':>8s} {'shifts fwd':>12s} {'xla train':>10s} {'shifts train':>14s} {'speed-up':>9s} {'auto train':>10s}  auto picks")
        for b, side, c, k, stride in DEPTHWISE_LAYERS:
            x = jax.random.normal(key, (b, side, side, c))
            w = jax.random.normal(key, (k, k, 1, c))
            conv = lambda x, w, s=stride: conv2d(x, w, s, "SAME", depthwise=True)  # noqa: E731
            _print_row(f"{b}x{side}x{side}x{c} k{k} s{stride}", _time_both(conv, x, w), _picked(conv, x, w, "shifts"))
    if "transposed" not in sections:
        return
    print(f"{'transposed layer, stride 2':28s} {'xla fwd':>8s} {'phases fwd':>12s} {'xla train':>10s} {'phases train':>14s} "
          f"{'speed-up':>9s} {'auto train':>10s}  auto picks")
    for b, side, cin, cout, k in TRANSPOSED_LAYERS:
        x = jax.random.normal(key, (b, side, side, cin))
        w = jax.random.normal(key, (k, k, cin, cout))
        conv = lambda x, w: conv_transpose2d(x, w, 2, "SAME")  # noqa: E731
        _print_row(f"{b}x{side}x{side}x{cin} -> {cout} k{k}", _time_both(conv, x, w), _picked(conv, x, w, "phases"))


def _picked(conv, x: jax.Array, w: jax.Array, other: str = "patches") -> str:
    """What lowering ``"auto"`` runs here: its inference forward pass, and in training (both arguments
    differentiated) the forward then the input- and kernel-gradient lowerings."""
    with lowering.use("auto"):
        lowering.tune(conv, x, w)
        lowering.tune(jax.grad(lambda x, w: jnp.sum(conv(x, w)), argnums=(0, 1)), x, w)
    shapes = [[list(a.shape), str(a.dtype)] for a in (x, w)]
    made = {len(choice): choice for key, choice in autotune.choices().items() if json.loads(key)[2] == shapes}
    if not made:
        return "fixed rule (measuring off or a small problem)"
    name = {"xla": "xla", "patches": other}
    return f"inference {name[made[1][0]]}, train {'/'.join(name[c] for c in made[3])}"


def _time_both(conv, x: jax.Array, w: jax.Array) -> dict[str, tuple[float, float]]:
    """Forward and forward + both gradients of ``conv(x, w)`` under the two lowerings and ``"auto"``, in ms."""
    row = {}
    for impl in ("xla", "patches", "auto"):
        forward = lambda x, w: conv(x, w)  # noqa: E731
        backward = jax.grad(lambda x, w: jnp.sum(conv(x, w) ** 2), argnums=(0, 1))
        with lowering.use(impl):  # read while the two programs are traced (their first timed call)
            if impl == "auto":  # before jit: a jitted function would keep the trace tune makes
                lowering.tune(forward, x, w)
                lowering.tune(backward, x, w)
            row[impl] = (median_ms(jax.jit(forward), x, w, calls=5), median_ms(jax.jit(backward), x, w, calls=5))
    return row


def _print_row(label: str, row: dict, note: str = "") -> None:
    print(f"{label:28s} {row['xla'][0]:8.1f} {row['patches'][0]:12.1f} {row['xla'][1]:10.1f} "
          f"{row['patches'][1]:14.1f} {row['xla'][1] / row['patches'][1]:8.2f}x {row['auto'][1]:10.1f}  {note}", flush=True)


if __name__ == "__main__":
    main()
