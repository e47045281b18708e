import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.data.augment import (
    AUGMENTATIONS,
    make_augmentation,
    random_crop,
    random_flip,
)

IDENTITY = {"random_crop": {"padding": 0}, "random_flip": {"probability": 0.0}}


def _images(seed, shape=(5, 7, 6, 2), dtype=np.float32):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape).astype(dtype))


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
@settings(max_examples=6)
@given(seed=st.integers(0, 1000), dtype=st.sampled_from([np.float32, np.float16]))
def test_augmentation_keeps_shape_dtype_and_is_a_function_of_the_key(name, seed, dtype):
    x = _images(seed, dtype=dtype)
    fn = jax.jit(AUGMENTATIONS[name])
    a, b = fn(jax.random.PRNGKey(seed), x), fn(jax.random.PRNGKey(seed), x)
    assert a.shape == x.shape and a.dtype == x.dtype
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(AUGMENTATIONS[name](jax.random.PRNGKey(seed), x, **IDENTITY[name]), x)


@settings(max_examples=6)
@given(seed=st.integers(0, 1000), padding=st.integers(1, 3))
def test_random_crop_is_a_translation_of_each_image(seed, padding):
    x = _images(seed, shape=(6, 9, 9, 1))
    y = np.asarray(random_crop(jax.random.PRNGKey(seed), x, padding, mode="constant"))
    padded = np.pad(np.asarray(x), ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    for i in range(len(x)):
        matches = [(dy, dx) for dy in range(2 * padding + 1) for dx in range(2 * padding + 1)
                   if np.array_equal(padded[i, dy:dy + 9, dx:dx + 9], y[i])]
        assert matches, f"example {i} is not a shifted copy of its input"


def test_random_crop_draws_a_separate_shift_per_example():
    x = jnp.tile(jnp.arange(64.0).reshape(1, 8, 8, 1), (32, 1, 1, 1))
    y = random_crop(jax.random.PRNGKey(0), x, 2)
    assert len({np.asarray(y[i]).tobytes() for i in range(32)}) > 5


@given(seed=st.integers(0, 1000))
def test_flips_are_involutions(seed):
    x = _images(seed)
    always = lambda k, im: random_flip(k, im, horizontal=True, vertical=True, probability=1.0)  # noqa: E731
    np.testing.assert_array_equal(always(jax.random.PRNGKey(seed), always(jax.random.PRNGKey(seed + 1), x)), x)
    np.testing.assert_array_equal(always(jax.random.PRNGKey(seed), x), x[:, ::-1, ::-1, :])


def test_composition_and_bad_names():
    fn = make_augmentation(["random_flip(probability=1.0)", "random_crop(padding=0)"])
    x = _images(0)
    np.testing.assert_array_equal(fn(jax.random.PRNGKey(0), x), x[:, :, ::-1, :])
    assert make_augmentation([]) is None
    with pytest.raises(ValueError, match="valid names are .*random_crop"):
        make_augmentation(["random_rotate"])
    with pytest.raises(ValueError, match="takes"):
        make_augmentation(["random_crop(pad=2)"])
