"""Vision Transformer: an image cut into patches, each patch a token, classified from a ``[CLS]`` token.

``x: [batch, height, width, channels] -> patches (patch_size x patch_size) -> linear embedding -> prepend a
learned class token -> learned positions -> encoder blocks -> layer norm -> head on the class token``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models.heads import DenseHead
from jaxdl.models.transformer import TRANSFORMER_FIELDS, Encoder, TransformerConfig


def image_to_patches(x: jax.Array, patch_size: int) -> jax.Array:
    """``[batch, h, w, c] -> [batch, (h / p) * (w / p), p * p * c]``, patches in row-major order."""
    batch, height, width, channels = x.shape
    if height % patch_size or width % patch_size:
        raise ValueError(f"image size {height}x{width} is not divisible by patch_size {patch_size}; "
                         f"pad or resize the images, or pick a patch size that divides both")
    x = x.reshape(batch, height // patch_size, patch_size, width // patch_size, patch_size, channels)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(batch, -1, patch_size * patch_size * channels)


class ViT(TransformerConfig):
    """Image classifier over ``patch_size`` patches: ``[batch, h, w, c] -> logits [batch, num_outputs]``."""

    patch_size: int = 4
    num_outputs: int = 10
    positional: str = "learned"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"ViT expects images [batch, height, width, channels], got shape {x.shape}")
        tokens = nn.Dense(self.d_model, name="patch_embed")(image_to_patches(x, self.patch_size))
        cls = self.param("cls", nn.initializers.zeros, (1, 1, self.d_model))
        tokens = jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0], 1, self.d_model)), tokens], axis=1)
        h = Encoder(**{f: getattr(self, f) for f in TRANSFORMER_FIELDS}, max_length=tokens.shape[1],
                    name="encoder")(tokens, train=train)
        return DenseHead((), self.num_outputs, name="head")(h[:, 0], train=train)
