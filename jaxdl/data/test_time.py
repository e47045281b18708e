"""Test-time augmentation: a prediction averaged over fixed views of each input image.

A model trained on flipped and shifted images has learnt that those views are the same object; at test time
it can be asked about several of them and its answers averaged, which removes part of the noise in any
single view. Configs name view *sets*, e.g. ``("horizontal_flip", "shifts(pixels=1)")``; each set holds the
identity, and the views are every composition of one member of each set (here {image, mirror} x {image,
4 one-pixel shifts}: 10 views). Classifier outputs are averaged as probabilities and returned as their
logarithm, so a loss, an accuracy or an argmax reads them as logits; other outputs are averaged as they are.
"""

from __future__ import annotations

import itertools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxdl.data.augment import check_pad_mode, pad_border
from jaxdl.util.spec import parse_spec

View = Callable[[jax.Array], jax.Array]
Forward = Callable[[jax.Array], jax.Array]
TestTimeAugmentation = Callable[[Forward, jax.Array], jax.Array]


def shift(images: jax.Array, dy: int, dx: int, mode: str = "edge") -> jax.Array:
    """Move every image ``dy`` pixels down and ``dx`` right (negative: up, left), filling the uncovered border
    as ``random_crop`` does (``"edge"`` repeats the border pixels): one fixed offset of its random crops."""
    pad = max(abs(dy), abs(dx))
    _, h, w, _ = images.shape
    padded = pad_border(images, pad, mode, "test-time shift")
    return padded[:, pad - dy:pad - dy + h, pad - dx:pad - dx + w, :]


def horizontal_flip() -> list[View]:
    """The image and its left-right mirror (the views ``random_flip`` trains on)."""
    return [lambda x: x, lambda x: x[:, :, ::-1, :]]


def vertical_flip() -> list[View]:
    """The image and its top-bottom mirror."""
    return [lambda x: x, lambda x: x[:, ::-1, :, :]]


def shifts(pixels: int = 1, mode: str = "edge") -> list[View]:
    """The image and its four moves by ``pixels`` (up, down, left, right): fixed crops of what
    ``random_crop(padding=p)`` trains on for ``pixels <= p``."""
    if pixels < 1:
        raise ValueError(f"test-time shifts need pixels >= 1, got {pixels}")
    check_pad_mode(mode, "test-time shifts")  # now, not when the first view is traced
    moves = ((pixels, 0), (-pixels, 0), (0, pixels), (0, -pixels))
    return [lambda x: x] + [lambda x, dy=dy, dx=dx: shift(x, dy, dx, mode) for dy, dx in moves]


VIEW_SETS: dict[str, Callable[..., list[View]]] = {
    "horizontal_flip": horizontal_flip,
    "vertical_flip": vertical_flip,
    "shifts": shifts,
}


def _mean_probability(outputs: jax.Array) -> jax.Array:
    return jax.nn.logsumexp(jax.nn.log_softmax(outputs, axis=-1), axis=0) - jnp.log(outputs.shape[0])


def _mean_sigmoid(outputs: jax.Array) -> jax.Array:
    # log(mean p) - log(mean (1 - p)) = the logit of the mean probability, without forming p.
    return jax.nn.logsumexp(jax.nn.log_sigmoid(outputs), axis=0) - jax.nn.logsumexp(jax.nn.log_sigmoid(-outputs), axis=0)


COMBINES: dict[str, Callable[[jax.Array], jax.Array]] = {
    "probabilities": _mean_probability,  # softmax classifiers: returned as log-probabilities
    "sigmoid": _mean_sigmoid,  # binary classifiers: returned as logits
    "mean": lambda outputs: jnp.mean(outputs, axis=0),  # regression
}


def _combiner(combine: str) -> Callable[[jax.Array], jax.Array]:
    if combine not in COMBINES:
        raise ValueError(f"unknown way to combine test-time views {combine!r}; valid: {list(COMBINES)}")
    return COMBINES[combine]


def compose_views(specs: Sequence[str]) -> list[View]:
    """Every composition of one view from each named set (the identity first), in a fixed order."""
    sets = []
    for spec in specs:
        name, kwargs = parse_spec(spec, VIEW_SETS, "test-time augmentation", positional=())
        sets.append(VIEW_SETS[name](**kwargs))

    def chain(members: tuple[View, ...]) -> View:
        def view(x: jax.Array) -> jax.Array:
            for member in members:
                x = member(x)
            return x
        return view

    return [chain(members) for members in itertools.product(*sets)]


def combine_views(outputs: jax.Array, combine: str) -> jax.Array:
    """Average ``outputs [views, batch, ...]`` over the views: as softmax probabilities (``"probabilities"``,
    returned as log-probabilities), as sigmoid probabilities (``"sigmoid"``, returned as logits) or as they are
    (``"mean"``)."""
    return _combiner(combine)(outputs.astype(jnp.float32))


def make_test_time_augmentation(specs: Sequence[str], combine: str = "probabilities") -> TestTimeAugmentation | None:
    """``predict(forward, images) -> outputs``: ``forward`` (the model in inference mode) applied to every view
    of ``images`` named by ``specs``, one view at a time (memory of one batch), the outputs averaged by
    ``combine``; None when ``specs`` is empty (predict on the images alone)."""
    average = _combiner(combine)
    if not specs:
        return None
    views = compose_views(specs)

    def predict(forward: Forward, images: jax.Array) -> jax.Array:
        if images.ndim != 4:
            raise ValueError(f"test-time augmentation expects images [batch, height, width, channels], got shape "
                             f"{images.shape}")
        # A scan over stacked views, not a batch of all of them: evaluation memory stays one batch's.
        stacked = jnp.stack([view(images) for view in views])
        return average(jax.lax.map(forward, stacked).astype(jnp.float32))

    return predict
