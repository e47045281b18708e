"""Grid detection: targets encode and decode back to the same boxes, the loss equals a NumPy loop, and the
detector's grid has the promised shape."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.boxes import mean_average_precision
from jaxdl.detection_grid import detect, encode_targets
from jaxdl.models import create_model
from jaxdl.tasks.detection import COORD_WEIGHT, NO_OBJECT_WEIGHT, detection_loss, detection_metrics

SIZE, GRID, CLASSES = 64, 8, 4


def _boxes(rng, n, k):
    """``n`` images with up to ``k`` boxes whose centres fall in distinct cells."""
    boxes, classes = np.zeros((n, k, 4), np.float32), np.full((n, k), -1, np.int32)
    for i in range(n):
        cells = rng.choice(GRID * GRID, int(rng.integers(1, k + 1)), replace=False)
        for slot, cell in enumerate(cells):
            cy, cx = (np.array(divmod(cell, GRID)) + rng.uniform(0.05, 0.95, 2)) * SIZE / GRID
            w, h = rng.uniform(4, 30, 2)
            boxes[i, slot], classes[i, slot] = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), rng.integers(CLASSES)
    return boxes, classes


def _perfect_logits(targets):
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    out = np.zeros((*targets.shape[:-1], 5 + CLASSES), np.float32)
    out[..., 0] = np.where(targets[..., 0] > 0, 12.0, -12.0)
    out[..., 1:5] = logit(np.clip(targets[..., 1:5], 1e-6, 1 - 1e-6))
    out[..., 5:] = 12.0 * np.eye(CLASSES)[targets[..., 5].astype(int)]
    return out


@settings(max_examples=8)
@given(seed=st.integers(0, 2 ** 16), n=st.integers(1, 3), k=st.integers(1, 4))
def test_encoded_boxes_decode_back_and_score_map_one(seed, n, k):
    rng = np.random.default_rng(seed)
    boxes, classes = _boxes(rng, n, k)
    targets = encode_targets(boxes, classes, SIZE, GRID)
    decoded, scores, predicted, keep = jax.jit(detect, static_argnums=1)(jnp.asarray(_perfect_logits(targets)), SIZE)
    detections = []
    for i in range(n):
        kept = np.asarray(keep[i])
        got = sorted(map(tuple, np.round(np.asarray(decoded[i])[kept], 3)))
        want = sorted(map(tuple, np.round(boxes[i][classes[i] >= 0], 3)))
        np.testing.assert_allclose(got, want, atol=2e-3)
        detections.append((np.asarray(decoded[i])[kept], np.asarray(scores[i])[kept], np.asarray(predicted[i])[kept]))
    assert mean_average_precision(detections, list(zip(boxes, classes)), CLASSES)["map"] == pytest.approx(1.0)


def _loss_by_loop(predictions, targets):
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    losses = []
    for p_img, t_img in zip(predictions.astype(np.float64), targets):
        total = 0.0
        for p, t in zip(p_img.reshape(-1, p_img.shape[-1]), t_img.reshape(-1, 6)):
            o = sig(p[0])
            total += -(t[0] * np.log(o) + (1 - t[0]) * np.log(1 - o)) * (1.0 if t[0] else NO_OBJECT_WEIGHT)
            if t[0]:
                b = sig(p[1:5])
                total += COORD_WEIGHT * (np.sum((b[:2] - t[1:3]) ** 2) + np.sum((np.sqrt(b[2:]) - np.sqrt(t[3:5])) ** 2))
                logits = p[5:]
                total += -(logits[int(t[5])] - np.log(np.sum(np.exp(logits))))
        losses.append(total)
    return np.array(losses)


@settings(max_examples=8)
@given(seed=st.integers(0, 2 ** 16), n=st.integers(1, 3))
def test_loss_equals_a_numpy_loop_and_metrics_count_cells(seed, n):
    rng = np.random.default_rng(seed)
    targets = encode_targets(*_boxes(rng, n, 3), SIZE, GRID)
    predictions = rng.normal(0, 2, (n, GRID, GRID, 5 + CLASSES)).astype(np.float32)
    loss = detection_loss(jnp.asarray(predictions), jnp.asarray(targets))
    np.testing.assert_allclose(loss, _loss_by_loop(predictions, targets), rtol=1e-4)
    perfect = detection_loss(jnp.asarray(_perfect_logits(targets)), jnp.asarray(targets))
    assert np.all(np.asarray(perfect) < 1e-2) and np.all(np.asarray(perfect) < np.asarray(loss))
    metrics = detection_metrics()(jnp.asarray(_perfect_logits(targets)), jnp.asarray(targets), perfect, None).compute()
    assert metrics["objectness_accuracy"] == 1.0 and metrics["class_accuracy"] == 1.0 and metrics["count"] == n


def test_the_detector_predicts_one_row_per_cell_or_explains_the_size():
    model = create_model("grid_detector", num_classes=CLASSES, widths=(8, 8, 8), head_width=8)
    out = jax.eval_shape(lambda: model.init_with_output(jax.random.PRNGKey(0), jnp.zeros((2, SIZE, SIZE, 1)))[0])
    assert out.shape == (2, GRID, GRID, 5 + CLASSES)
    with pytest.raises(ValueError, match="divisible by 8"):
        model.init(jax.random.PRNGKey(0), jnp.zeros((1, 60, 60, 1)))
