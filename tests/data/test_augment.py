import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.data.augment import (
    AUGMENTATIONS,
    affine_transform,
    brightness_contrast,
    cutout,
    make_augmentation,
    mixup,
    random_crop,
    random_erasing,
    random_flip,
)

IDENTITY = {"random_crop": {"padding": 0}, "random_flip": {"probability": 0.0}, "random_affine": {},
            "random_rotation": {"degrees": 0}, "random_translation": {"fraction": 0}, "random_zoom": {"fraction": 0},
            "brightness_contrast": {"brightness": 0, "contrast": 0}, "cutout": {"size": 0},
            "random_erasing": {"probability": 0.0}}
ACTIVE = {"random_affine": {"degrees": 20, "translate": 0.1, "zoom": 0.1}, "cutout": {"size": 3},
          "random_erasing": {"probability": 1.0}}


def _images(seed, shape=(5, 7, 6, 2), dtype=np.float32):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape).astype(dtype))


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
@settings(max_examples=6)
@given(seed=st.integers(0, 1000), dtype=st.sampled_from([np.float32, np.float16]))
def test_augmentation_keeps_shape_dtype_and_is_a_function_of_the_key(name, seed, dtype):
    x = _images(seed, dtype=dtype)
    fn = jax.jit(lambda key, images: AUGMENTATIONS[name](key, images, **ACTIVE.get(name, {})))
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
    x, y = _images(0), jnp.arange(5)
    images, labels = fn(jax.random.PRNGKey(0), x, y)
    np.testing.assert_array_equal(images, x[:, :, ::-1, :])
    np.testing.assert_array_equal(labels, y)
    with pytest.raises(ValueError, match="needs the number of classes"):
        make_augmentation(["mixup(alpha=0.2)"])
    assert make_augmentation([]) is None
    with pytest.raises(ValueError, match="valid names are .*random_crop"):
        make_augmentation(["random_rotate"])
    with pytest.raises(ValueError, match="takes"):
        make_augmentation(["random_crop(pad=2)"])
    with pytest.raises(ValueError, match=r"random_crop padding must be >= 0, got -1"):
        random_crop(jax.random.PRNGKey(0), x, padding=-1)
    with pytest.raises(ValueError, match=r"random_crop mode must be one of \['edge', 'constant', 'reflect'\], got 'wrap'"):
        random_crop(jax.random.PRNGKey(0), x, mode="wrap")
    # A word argument passes through the spec to the function: every crop is a window of the reflect-padded image.
    reflected = np.asarray(make_augmentation(["random_crop(padding=1, mode='reflect')"])(jax.random.PRNGKey(0), x, y)[0])
    padded = np.pad(np.asarray(x), ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    h, w = x.shape[1:3]
    for i in range(len(x)):
        assert any(np.array_equal(reflected[i], padded[i, dy:dy + h, dx:dx + w]) for dy in range(3) for dx in range(3))


def test_affine_quarter_turns_and_integer_shifts_move_pixels_exactly():
    x = _images(1, shape=(3, 6, 6, 2))
    zeros, ones = jnp.zeros(3), jnp.ones(3)
    np.testing.assert_allclose(affine_transform(x, zeros, jnp.zeros((3, 2)), ones), x, atol=1e-5)
    turned = affine_transform(x, zeros + jnp.pi / 2, jnp.zeros((3, 2)), ones)
    np.testing.assert_allclose(turned, np.rot90(np.asarray(x), k=1, axes=(1, 2)), atol=1e-5)  # counter-clockwise
    shifted = affine_transform(x, zeros, jnp.tile(jnp.array([[1.0, 2.0]]), (3, 1)), ones)
    np.testing.assert_allclose(shifted[:, 1:, 2:], x[:, :-1, :-2], atol=1e-5)  # out[y, x] = in[y - 1, x - 2]
    np.testing.assert_allclose(shifted[:, 0, 2:], x[:, 0, :-2], atol=1e-5)  # the border repeats the edge row


@settings(max_examples=8)
@given(seed=st.integers(0, 1000), size=st.integers(1, 4))
def test_cutout_blanks_at_most_one_square_per_image(seed, size):
    x = _images(seed) + 10.0  # no pixel is 0 before the cutout
    out = np.asarray(cutout(jax.random.PRNGKey(seed), x, size=size))
    changed = out != np.asarray(x)
    assert np.all(out[changed] == 0)
    for image in changed.any(axis=-1):
        rows, cols = np.nonzero(image)
        assert 0 < len(rows) <= size * size and np.ptp(rows) < size and np.ptp(cols) < size


@settings(max_examples=8)
@given(seed=st.integers(0, 1000), min_area=st.floats(0.02, 0.3), extra_area=st.floats(0.0, 0.3),
       max_aspect=st.floats(1.0, 4.0))
def test_random_erasing_blanks_one_rectangle_of_the_asked_area_and_shape(seed, min_area, extra_area, max_aspect):
    size = 32
    x = _images(seed, shape=(64, size, size, 2)) + 10.0  # no pixel is 0 before the erasing
    max_area = min_area + extra_area
    out = np.asarray(random_erasing(jax.random.PRNGKey(seed), x, probability=1.0, min_area=min_area,
                                    max_area=max_area, max_aspect=max_aspect, noise=False))
    changed = out != np.asarray(x)
    assert np.all(out[changed] == 0)
    np.testing.assert_array_equal(changed.all(axis=-1), changed.any(axis=-1))  # every channel of a pixel
    for image in changed.any(axis=-1):
        rows, cols = np.nonzero(image)
        height, width = np.ptp(rows) + 1, np.ptp(cols) + 1
        assert len(rows) == height * width, "the erased pixels are not one filled rectangle"
        # Sides are rounded to whole pixels: the area and aspect hold up to half a pixel on each side.
        assert (np.sqrt(min_area) * size - 1) ** 2 <= height * width <= (np.sqrt(max_area) * size + 1) ** 2
        assert (height - 0.5) / (width + 0.5) <= max_aspect and (width - 0.5) / (height + 0.5) <= max_aspect


@given(seed=st.integers(0, 1000))
@settings(max_examples=4)
def test_random_erasing_hits_about_the_asked_share_of_images_with_noise(seed):
    x = jnp.full((400, 8, 8, 1), 10.0)
    out = np.asarray(random_erasing(jax.random.PRNGKey(seed), x, probability=0.3))
    erased = (out != 10.0).any(axis=(1, 2, 3))
    assert abs(erased.mean() - 0.3) < 0.1  # 0.1 is over 4 standard deviations of a share of 400
    noise = out[out != 10.0]
    assert abs(noise.mean()) < 0.3 and 0.7 < noise.std() < 1.3


@settings(max_examples=8)
@given(seed=st.integers(0, 1000))
def test_brightness_contrast_scales_deviations_and_shifts_the_mean(seed):
    x = _images(seed)
    out = brightness_contrast(jax.random.PRNGKey(seed), x, brightness=0.3, contrast=0.4)
    mean_in, mean_out = x.mean(axis=(1, 2, 3)), out.mean(axis=(1, 2, 3))
    assert np.all(np.abs(mean_out - mean_in) <= 0.3 + 1e-5)
    dev_in, dev_out = x - mean_in[:, None, None, None], out - mean_out[:, None, None, None]
    factor = (dev_out.reshape(5, -1) / dev_in.reshape(5, -1))
    np.testing.assert_allclose(factor, factor[:, :1] * np.ones_like(factor), rtol=1e-3)
    assert np.all((factor[:, 0] >= 0.6 - 1e-4) & (factor[:, 0] <= 1.4 + 1e-4))


@settings(max_examples=8)
@given(seed=st.integers(0, 1000), alpha=st.floats(0.1, 2.0))
def test_mixup_mixes_each_example_with_one_partner_and_the_labels_alike(seed, alpha):
    x = _images(seed)
    identity_labels = jnp.eye(5)  # label row i names example i: its mixed row reveals lambda and the partner
    images, labels = mixup(jax.random.PRNGKey(seed), x, identity_labels, alpha=alpha)
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, rtol=1e-6)
    assert np.all(labels >= 0)
    for i in range(5):
        expected = sum(float(labels[i, j]) * x[j] for j in range(5))
        np.testing.assert_allclose(images[i], expected, rtol=1e-4, atol=1e-5)
        assert np.count_nonzero(np.asarray(labels[i]) > 1e-7) <= 2
    same_x, same_y = mixup(jax.random.PRNGKey(seed), x, identity_labels, alpha=0.0)
    assert same_x is x and same_y is identity_labels
