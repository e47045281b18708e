"""Loss functions (per example) and weight penalties.

Every loss returns one value per example, ``[batch]``, so the train step can mask padded examples and
average only real ones. Numerically stable forms are used where the textbook formula would overflow.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections

from jaxdl.util.tree import PyTree, match_mask

LossFn = Callable[[jax.Array, jax.Array], jax.Array]


def _per_example(values: jax.Array) -> jax.Array:
    return values.reshape(values.shape[0], -1).mean(axis=1)


def mse(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean squared error ``mean((y_hat - y)^2)`` over all but the batch axis: ``[batch, ...] -> [batch]``."""
    if predictions.shape != targets.shape:
        raise ValueError(f"mse: predictions {predictions.shape} and targets {targets.shape} must have the same shape")
    return _per_example(jnp.square(predictions - targets.astype(predictions.dtype)))


def binary_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Binary cross-entropy from logits ``z``: ``-[y log s(z) + (1 - y) log(1 - s(z))]``, ``s`` the sigmoid.

    Evaluated as ``max(z, 0) - z y + log(1 + exp(-|z|))``, which equals the formula without overflow.
    ``logits`` is ``[batch]`` or ``[batch, k]`` (k independent labels); labels are 0/1 of the same shape
    (``[batch]`` labels with ``[batch, 1]`` logits are accepted). Returns ``[batch]``.
    """
    if logits.ndim == labels.ndim + 1 and logits.shape[-1] == 1:
        labels = labels[..., None]
    if logits.shape != labels.shape:
        raise ValueError(f"binary_cross_entropy: logits {logits.shape} and labels {labels.shape} do not match")
    y = labels.astype(logits.dtype)
    loss = jnp.maximum(logits, 0) - logits * y + jnp.log1p(jnp.exp(-jnp.abs(logits)))
    return _per_example(loss)


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """Categorical cross-entropy ``-sum_c t_c log softmax(z)_c`` for ``logits: [batch, classes]``.

    ``labels`` are integer classes ``[batch]`` or one-hot/probability rows ``[batch, classes]``. With
    ``label_smoothing = e`` the target is ``(1 - e) t + e / classes``. Returns ``[batch]``.
    """
    num_classes = logits.shape[-1]
    if labels.ndim == logits.ndim - 1:
        if not jnp.issubdtype(labels.dtype, jnp.integer):
            raise ValueError(f"softmax_cross_entropy: class labels must be integers, got {labels.dtype}")
        targets = jax.nn.one_hot(labels, num_classes, dtype=logits.dtype)
    elif labels.shape == logits.shape:
        targets = labels.astype(logits.dtype)
    else:
        raise ValueError(
            f"softmax_cross_entropy: labels {labels.shape} fit neither integer classes {logits.shape[:-1]} "
            f"nor one-hot rows {logits.shape}"
        )
    if label_smoothing:
        targets = (1.0 - label_smoothing) * targets + label_smoothing / num_classes
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    loss = -jnp.sum(targets * log_probs, axis=-1)
    return loss.reshape(loss.shape[0], -1).mean(axis=1) if loss.ndim > 1 else loss


def sequence_cross_entropy(logits: jax.Array, labels: jax.Array, ignore_label: int = -1,
                           label_smoothing: float = 0.0) -> jax.Array:
    """Per-sequence mean token cross-entropy for ``logits: [batch, time, classes]``, ``labels: [batch, time]``.

    Steps whose label equals ``ignore_label`` (padding) are left out of the mean, so a sequence's loss does not
    depend on how much padding follows it. A sequence with no counted step has loss 0. Returns ``[batch]``.
    """
    if logits.ndim != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(f"sequence_cross_entropy: expected logits [batch, time, classes] and labels [batch, time], "
                         f"got {logits.shape} and {labels.shape}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"sequence_cross_entropy: labels must be integers, got {labels.dtype}")
    valid = labels != ignore_label
    targets = jax.nn.one_hot(jnp.where(valid, labels, 0), logits.shape[-1], dtype=logits.dtype)
    if label_smoothing:
        targets = (1.0 - label_smoothing) * targets + label_smoothing / logits.shape[-1]
    token_loss = -jnp.sum(targets * jax.nn.log_softmax(logits, axis=-1), axis=-1)
    counted = valid.astype(logits.dtype)
    return jnp.sum(token_loss * counted, axis=1) / jnp.maximum(jnp.sum(counted, axis=1), 1.0)


def soft_dice_loss(probabilities: jax.Array, targets: jax.Array, epsilon: float = 1.0) -> jax.Array:
    """Soft Dice loss between two class-probability maps ``[batch, ..., classes]``: ``1 - mean_c (2 sum p t + e)
    / (sum p + sum t + e)``, sums over each example's pixels. Symmetric in its two arguments, 0 when they are
    the same one-hot map; ``epsilon`` keeps a class absent from both at a perfect score. Returns ``[batch]``."""
    if probabilities.shape != targets.shape or probabilities.ndim < 3:
        raise ValueError(f"soft_dice_loss: expected two maps [batch, ..., classes] of one shape, got "
                         f"{probabilities.shape} and {targets.shape}")
    axes = tuple(range(1, probabilities.ndim - 1))
    overlap = jnp.sum(probabilities * targets, axis=axes)
    total = jnp.sum(probabilities, axis=axes) + jnp.sum(targets, axis=axes)
    return 1.0 - jnp.mean((2.0 * overlap + epsilon) / (total + epsilon), axis=-1)


def dice_loss(logits: jax.Array, labels: jax.Array, epsilon: float = 1.0) -> jax.Array:
    """`soft_dice_loss` of ``softmax(logits)`` (``[batch, h, w, classes]``) against integer ``labels [batch, h, w]``:
    a segmentation loss that weighs each class by its overlap, not its pixel count. Returns ``[batch]``."""
    if labels.shape != logits.shape[:-1] or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"dice_loss: labels must be integer classes of shape {logits.shape[:-1]}, got "
                         f"{labels.dtype} {labels.shape}")
    targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    return soft_dice_loss(jax.nn.softmax(logits, axis=-1), targets, epsilon)


def cross_entropy_dice(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-pixel softmax cross-entropy (mean over pixels) plus `dice_loss`: the usual U-Net objective. ``[batch]``."""
    return softmax_cross_entropy(logits, labels) + dice_loss(logits, labels)


def l1_penalty(params: PyTree, pattern: str | None = "kernel") -> jax.Array:
    """``sum |w|`` over the parameters whose path matches ``pattern`` (default: every ``kernel``, no biases)."""
    mask = match_mask(params, pattern)
    terms = [jnp.sum(jnp.abs(w)) for w, m in zip(jax.tree.leaves(params), jax.tree.leaves(mask)) if m]
    return jnp.sum(jnp.stack(terms))


def l2_penalty(params: PyTree, pattern: str | None = "kernel") -> jax.Array:
    """``sum w^2`` over the parameters whose path matches ``pattern`` (default: every ``kernel``, no biases)."""
    mask = match_mask(params, pattern)
    terms = [jnp.sum(jnp.square(w)) for w, m in zip(jax.tree.leaves(params), jax.tree.leaves(mask)) if m]
    return jnp.sum(jnp.stack(terms))


def make_penalty(config: ml_collections.ConfigDict | dict[str, Any]) -> Callable[[PyTree], jax.Array] | None:
    """Build ``penalty(params) -> scalar`` = ``l1 * sum|w| + l2 * sum w^2`` from config, or None when both are 0.

    ``config.penalty_params`` is the regex choosing which parameters are penalised (default ``"kernel"``).
    """
    l1, l2 = float(config.get("l1", 0.0) or 0.0), float(config.get("l2", 0.0) or 0.0)
    if l1 < 0 or l2 < 0:
        raise ValueError(f"penalty coefficients must be >= 0, got l1={l1}, l2={l2}")
    if not (l1 or l2):
        return None
    pattern = config.get("penalty_params", "kernel")

    def penalty(params: PyTree) -> jax.Array:
        total = jnp.zeros((), jnp.float32)
        if l1:
            total = total + l1 * l1_penalty(params, pattern)
        if l2:
            total = total + l2 * l2_penalty(params, pattern)
        return total

    return penalty
