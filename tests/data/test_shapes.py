"""Generated segmentation data: reproducible from its seed, and its masks are exactly the drawn shapes."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.data.shapes import CLASSES, shapes_images


@settings(max_examples=8)
@given(seed=st.integers(0, 2 ** 16), size=st.sampled_from([16, 32, 48]), max_shapes=st.integers(1, 4))
def test_masks_mark_exactly_the_shape_pixels_and_the_seed_fixes_everything(seed, size, max_shapes):
    images, masks = shapes_images(6, size, max_shapes, noise=0.0, seed=seed)
    assert images.shape == (6, size, size, 1) and images.dtype == np.float32 and masks.dtype == np.int32
    # Without noise the background lies in [0.15, 0.75] and every shape outside it: the mask is the image's truth.
    inside = (images[..., 0] < 0.15) | (images[..., 0] > 0.75)
    np.testing.assert_array_equal(inside, masks > 0)
    assert masks.min() >= 0 and masks.max() < len(CLASSES) and all((m > 0).any() for m in masks)
    again = shapes_images(6, size, max_shapes, noise=0.0, seed=seed)
    np.testing.assert_array_equal(again[0], images)
    np.testing.assert_array_equal(again[1], masks)
    noisy, _ = shapes_images(6, size, max_shapes, seed=seed)
    assert 0.0 <= noisy.min() and noisy.max() <= 1.0
