"""Test-time augmentation: views against NumPy, their composition, the averaging, and bad specs."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.data.augment import random_crop
from jaxdl.data.test_time import COMBINES, combine_views, compose_views, make_test_time_augmentation, shift


def _images(seed, shape=(3, 7, 6, 2), dtype=np.float32):
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


def _numpy_shift(x, dy, dx, mode):
    pad = max(abs(dy), abs(dx), 1)
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode=mode)
    return padded[:, pad - dy:pad - dy + x.shape[1], pad - dx:pad - dx + x.shape[2], :]


@settings(max_examples=25)
@given(dy=st.integers(-3, 3), dx=st.integers(-3, 3), mode=st.sampled_from(["edge", "constant", "reflect"]),
       seed=st.integers(0, 99))
def test_a_shift_moves_pixels_as_numpy_padding_and_slicing_does(dy, dx, mode, seed):
    x = _images(seed)
    got = np.asarray(shift(jnp.asarray(x), dy, dx, mode))
    np.testing.assert_array_equal(got, _numpy_shift(x, dy, dx, mode))
    if dy > 0 and dx >= 0:  # content moves down/right: pixel (i, j) lands on (i + dy, j + dx)
        np.testing.assert_array_equal(got[:, dy:, dx:], x[:, :x.shape[1] - dy, :x.shape[2] - dx])


def test_a_shift_is_one_of_the_crops_random_crop_draws():
    """Every one-pixel test-time view is an image ``random_crop(padding=1)`` can produce: the views ask the model
    about what it was trained on."""
    x = jnp.asarray(_images(0, (1, 5, 5, 1)))
    crops = {np.asarray(random_crop(k, x, padding=1)).tobytes() for k in jax.random.split(jax.random.key(0), 400)}
    for view in compose_views(["shifts(pixels=1)"]):
        assert np.asarray(view(x)).tobytes() in crops


@settings(max_examples=10)
@given(specs=st.lists(st.sampled_from(["horizontal_flip", "vertical_flip", "shifts", "shifts(pixels=2)"]),
                      max_size=3),
       dtype=st.sampled_from([np.float32, np.float16, np.uint8]))
def test_views_keep_shape_and_dtype_come_one_per_combination_and_start_with_the_image(specs, dtype):
    sizes = {"horizontal_flip": 2, "vertical_flip": 2, "shifts": 5, "shifts(pixels=2)": 5}
    x = jnp.asarray((_images(1) * 40).astype(dtype))
    views = compose_views(specs)
    assert len(views) == int(np.prod([sizes[s] for s in specs]))
    outputs = [view(x) for view in views]
    assert all(o.shape == x.shape and o.dtype == x.dtype for o in outputs)
    np.testing.assert_array_equal(outputs[0], x)


def test_composed_views_are_each_flip_of_each_shift_and_a_flip_undoes_itself():
    x = jnp.asarray(_images(2))
    mirror = compose_views(["horizontal_flip"])[1]
    np.testing.assert_array_equal(mirror(mirror(x)), x)
    np.testing.assert_array_equal(mirror(x), np.asarray(x)[:, :, ::-1])
    got = [np.asarray(v(x)) for v in compose_views(["horizontal_flip", "shifts"])]
    moves = [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)]
    want = [_numpy_shift(np.asarray(f(x)), dy, dx, "edge")
            for f, (dy, dx) in itertools.product([lambda a: a, mirror], moves)]
    assert len(got) == len(want) == 10
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@settings(max_examples=15)
@given(views=st.integers(1, 6), batch=st.integers(1, 4), classes=st.integers(2, 6), seed=st.integers(0, 99))
def test_views_are_averaged_as_probabilities_as_sigmoid_probabilities_or_as_they_are(views, batch, classes, seed):
    outputs = np.random.default_rng(seed).normal(scale=3, size=(views, batch, classes)).astype(np.float32)
    softmax = np.exp(outputs - outputs.max(-1, keepdims=True))
    softmax /= softmax.sum(-1, keepdims=True)
    probabilities = np.exp(np.asarray(combine_views(jnp.asarray(outputs), "probabilities"), np.float64))
    np.testing.assert_allclose(probabilities, softmax.mean(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)
    sigmoid = 1 / (1 + np.exp(-outputs.astype(np.float64)))
    logit = np.asarray(combine_views(jnp.asarray(outputs), "sigmoid"), np.float64)
    np.testing.assert_allclose(1 / (1 + np.exp(-logit)), sigmoid.mean(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(combine_views(jnp.asarray(outputs), "mean"), outputs.mean(0), rtol=1e-6, atol=1e-6)
    if views == 1:  # one view: the model's own prediction
        np.testing.assert_array_equal(np.argmax(probabilities, -1), np.argmax(outputs[0], -1))


@settings(max_examples=8)
@given(specs=st.lists(st.sampled_from(["horizontal_flip", "vertical_flip", "shifts", "shifts(pixels=2, mode=reflect)"]),
                      min_size=1, max_size=2, unique=True),
       seed=st.integers(0, 99))
def test_the_prediction_is_the_average_over_views_of_the_model_applied_to_each(specs, seed):
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(7 * 6 * 2, 4)).astype(np.float32)
    forward = lambda images: images.reshape(images.shape[0], -1) @ weights  # noqa: E731
    x = _images(seed)
    got = jax.jit(lambda a: make_test_time_augmentation(specs)(forward, a))(jnp.asarray(x))
    logits = [np.asarray(forward(np.asarray(v(jnp.asarray(x))))) for v in compose_views(specs)]
    want = np.mean([np.exp(z - z.max(-1, keepdims=True)) / np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)
                    for z in logits], axis=0)
    np.testing.assert_allclose(np.exp(got), want, rtol=1e-4, atol=1e-6)
    symmetric = lambda images: forward(images + images[:, :, ::-1])  # noqa: E731
    mirrored = make_test_time_augmentation(("horizontal_flip",))(symmetric, jnp.asarray(x))
    np.testing.assert_allclose(mirrored, jax.nn.log_softmax(symmetric(jnp.asarray(x))), rtol=1e-5, atol=1e-5)


def test_no_views_means_no_averaging_and_bad_specs_fail_clearly():
    assert make_test_time_augmentation(()) is None
    with pytest.raises(ValueError, match=r"unknown test-time augmentation 'rotate'.*horizontal_flip.*shifts"):
        make_test_time_augmentation(("rotate",))
    with pytest.raises(ValueError, match="takes"):
        make_test_time_augmentation(("shifts(padding=2)",))
    with pytest.raises(ValueError, match="pixels >= 1"):
        make_test_time_augmentation(("shifts(pixels=0)",))
    with pytest.raises(ValueError, match=r"shifts mode must be one of \['edge', 'constant', 'reflect'\]"):
        make_test_time_augmentation(("shifts(mode=wrap)",))
    with pytest.raises(ValueError, match=r"combine.*'median'.*" + str(list(COMBINES)).replace("[", r"\[")):
        make_test_time_augmentation(("shifts",), combine="median")
    predict = make_test_time_augmentation(("shifts",))
    with pytest.raises(ValueError, match=r"images \[batch, height, width, channels\], got shape \(3, 5\)"):
        predict(lambda a: a, jnp.zeros((3, 5)))
