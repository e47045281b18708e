"""Boxes: IoU against a by-hand reference and its invariants, greedy NMS against a Python loop, mAP against
a NumPy transcription of the PASCAL VOC evaluation code."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxdl.boxes import box_iou, mean_average_precision, non_max_suppression, pairwise_iou


def _random_boxes(rng, n, size=10.0):
    corners = rng.uniform(0, size, (n, 2))
    sides = rng.uniform(0.2, size / 2, (n, 2))
    return np.concatenate([corners, corners + sides], axis=1).astype(np.float32)


def _iou_by_hand(a, b):
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


_pairwise_iou = jax.jit(pairwise_iou)  # one program per shape pair, not one per operation


@given(seed=st.integers(0, 2 ** 16), n=st.sampled_from([1, 5]), m=st.sampled_from([2, 6]), shift=st.floats(-50, 50))
def test_iou_matches_by_hand_is_one_with_itself_symmetric_and_translation_invariant(seed, n, m, shift):
    rng = np.random.default_rng(seed)
    a, b = _random_boxes(rng, n), _random_boxes(rng, m)
    ious = np.asarray(_pairwise_iou(jnp.asarray(a), jnp.asarray(b)))
    np.testing.assert_allclose(ious, [[_iou_by_hand(x, y) for y in b] for x in a], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.diag(np.asarray(_pairwise_iou(jnp.asarray(a), jnp.asarray(a)))), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(_pairwise_iou(jnp.asarray(b), jnp.asarray(a))), ious.T, rtol=1e-6)
    moved = np.asarray(_pairwise_iou(jnp.asarray(a + shift), jnp.asarray(b + shift)))
    np.testing.assert_allclose(moved, ious, atol=2e-4)  # float32 rounding of the shifted corners


def test_disjoint_and_empty_boxes_have_iou_zero():
    assert float(box_iou(jnp.array([0.0, 0, 1, 1]), jnp.array([2.0, 2, 3, 3]))) == 0.0
    assert float(box_iou(jnp.array([0.0, 0, 1, 1]), jnp.array([1.0, 0, 2, 1]))) == 0.0  # touching edges
    assert float(box_iou(jnp.zeros(4), jnp.zeros(4))) == 0.0
    with pytest.raises(ValueError, match=r"\[\.\.\., 4\]"):
        box_iou(jnp.zeros((2, 3)), jnp.zeros((2, 4)))


def _greedy_nms(boxes, scores, threshold):
    keep = []
    for i in np.argsort(-scores, kind="stable"):
        if all(_iou_by_hand(boxes[i], boxes[j]) <= threshold for j in keep):
            keep.append(i)
    return sorted(keep)


@given(seed=st.integers(0, 2 ** 16), n=st.integers(1, 12), threshold=st.sampled_from([0.3, 0.5, 0.7]))
def test_nms_equals_the_greedy_loop_keeps_each_clusters_best_and_every_isolated_box(seed, n, threshold):
    rng = np.random.default_rng(seed)
    boxes = _random_boxes(rng, n)
    scores = rng.permutation(n).astype(np.float32)  # distinct scores: one greedy order
    keep = np.asarray(jax.jit(non_max_suppression, static_argnums=2)(jnp.asarray(boxes), jnp.asarray(scores), threshold))
    assert sorted(np.nonzero(keep)[0]) == _greedy_nms(boxes, scores, threshold)
    assert keep[np.argmax(scores)]  # the best box of all is kept
    overlaps = np.array([[_iou_by_hand(x, y) > threshold for y in boxes] for x in boxes]) & ~np.eye(n, dtype=bool)
    assert keep[~overlaps.any(axis=1)].all()  # a box that overlaps nothing is never dropped


def _voc_ap(rec, prec):
    # Transcribed from the PASCAL VOC devkit (VOCevaldet / py-faster-rcnn voc_eval, use_07_metric=False).
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


def _voc_map(detections, truths, num_classes, threshold):
    aps = []
    for c in range(num_classes):
        records = {i: {"bbox": t[0][t[1] == c], "det": [False] * int((t[1] == c).sum())} for i, t in enumerate(truths)}
        npos = sum(len(r["bbox"]) for r in records.values())
        if npos == 0:
            continue
        ids, confidence, bb = [], [], []
        for i, (boxes, scores, classes) in enumerate(detections):
            for box, score, k in zip(boxes, scores, classes):
                if k == c:
                    ids.append(i), confidence.append(score), bb.append(box)
        order = np.argsort(-np.array(confidence), kind="stable")
        tp, fp = np.zeros(len(order)), np.zeros(len(order))
        for d, idx in enumerate(order):
            r, box = records[ids[idx]], bb[idx]
            ovmax, jmax = -np.inf, -1
            for j, g in enumerate(r["bbox"]):
                ov = _iou_by_hand(box, g)
                if ov > ovmax:
                    ovmax, jmax = ov, j
            if ovmax >= threshold and not r["det"][jmax]:
                tp[d], r["det"][jmax] = 1, True
            else:
                fp[d] = 1
        tp, fp = np.cumsum(tp), np.cumsum(fp)
        aps.append(_voc_ap(tp / npos, tp / np.maximum(tp + fp, np.finfo(np.float64).eps)))
    return float(np.mean(aps)) if aps else 0.0


@given(seed=st.integers(0, 2 ** 16), images=st.integers(1, 5), classes=st.integers(1, 3),
       threshold=st.sampled_from([0.5, 0.75]))
def test_map_equals_the_voc_reference_on_random_detections(seed, images, classes, threshold):
    rng = np.random.default_rng(seed)
    truths, detections = [], []
    for _ in range(images):
        gt = _random_boxes(rng, int(rng.integers(0, 4)))
        truths.append((gt, rng.integers(0, classes, len(gt))))
        # Detections near the truths (jittered) and some anywhere, with distinct random scores.
        near = gt + rng.normal(0, 0.5, gt.shape).astype(np.float32) if len(gt) else np.zeros((0, 4), np.float32)
        boxes = np.concatenate([near, _random_boxes(rng, int(rng.integers(0, 4)))])
        labels = np.concatenate([truths[-1][1], rng.integers(0, classes, len(boxes) - len(gt))])
        labels = np.where(rng.random(len(labels)) < 0.2, rng.integers(0, classes, len(labels)), labels)
        detections.append((np.sort(boxes.reshape(-1, 2, 2), axis=1).reshape(-1, 4), rng.random(len(boxes)), labels))
    ours = mean_average_precision(detections, truths, classes, threshold)
    assert ours["map"] == pytest.approx(_voc_map(detections, truths, classes, threshold), abs=1e-9)
    assert all(ap is None or 0.0 <= ap <= 1.0 for ap in ours["per_class"])


def test_perfect_detections_score_map_one_and_mismatched_inputs_fail():
    gt = _random_boxes(np.random.default_rng(0), 3)
    truths = [(gt, np.array([0, 1, 1]))]
    assert mean_average_precision([(gt, np.array([0.9, 0.8, 0.7]), np.array([0, 1, 1]))], truths, 2)["map"] == 1.0
    with pytest.raises(ValueError, match="images"):
        mean_average_precision([], truths, 2)
