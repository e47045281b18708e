"""Digit canvases: every box is the tight box of its ink, no ink lies outside the boxes, and boxes never overlap."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.boxes import pairwise_iou
from jaxdl.data.detection import INK, digit_canvases, resize_image


def _blobs(n, rng):
    # Stand-in digits: random filled rectangles on 28x28 (the real ones come from MNIST in the experiment).
    digits = np.zeros((n, 28, 28), np.float32)
    for d in digits:
        y0, x0 = rng.integers(2, 12, 2)
        d[y0:y0 + rng.integers(6, 14), x0:x0 + rng.integers(6, 14)] = 1.0
    return digits


@settings(max_examples=8)
@given(seed=st.integers(0, 2 ** 16), size=st.sampled_from([40, 64]), max_digits=st.integers(1, 4))
def test_boxes_are_exact_and_disjoint(seed, size, max_digits):
    rng = np.random.default_rng(seed)
    canvases, boxes, classes = digit_canvases(_blobs(10, rng), rng.integers(0, 10, 10), 5, size, max_digits, seed=seed)
    for canvas, canvas_boxes, canvas_classes in zip(canvases[..., 0], boxes, classes):
        real = canvas_boxes[canvas_classes >= 0].astype(int)
        assert len(real) >= 1 and (canvas_classes[len(real):] == -1).all()
        covered = np.zeros(canvas.shape, bool)
        for x0, y0, x1, y1 in real:
            ink = canvas[y0:y1, x0:x1] > INK
            # Tight: ink touches all four sides of its box.
            assert ink[0].any() and ink[-1].any() and ink[:, 0].any() and ink[:, -1].any()
            covered[y0:y1, x0:x1] = True
        assert not (canvas > INK)[~covered].any()
        ious = np.asarray(pairwise_iou(real.astype(np.float32), real.astype(np.float32)))
        assert np.allclose(ious - np.diag(np.diag(ious)), 0)


def test_resize_keeps_a_constant_image_and_bad_inputs_fail():
    np.testing.assert_allclose(resize_image(np.full((28, 28), 0.7), 13, 40), 0.7, rtol=1e-12)
    with pytest.raises(ValueError, match="scale"):
        digit_canvases(np.zeros((2, 28, 28)), np.zeros(2), 1, size=16, scale=(14, 32))
