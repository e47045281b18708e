"""Token embeddings with a vocabulary check: ids ``[batch, time]`` -> vectors ``[batch, time, features]``."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def check_token_ids(ids: jax.Array | np.ndarray, vocab_size: int, what: str = "token ids") -> None:
    """Raise ``ValueError`` when ``ids`` are not integers in ``[0, vocab_size)``, naming the first bad one.

    Inside a traced function only the dtype can be checked (values are unknown), so data is checked at the
    boundary: on the host before training, and here whenever the module is applied eagerly.
    """
    if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise ValueError(f"{what} must be integers, got dtype {ids.dtype}; tokenize text before embedding it")
    if isinstance(ids, jax.core.Tracer):
        return
    host = np.asarray(ids)
    bad = (host < 0) | (host >= vocab_size)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{what}: id {int(host[where])} at index {where} is outside the vocabulary of {vocab_size} ids "
                         f"(valid ids are 0..{vocab_size - 1}); {int(bad.sum())} ids are out of range. Was the data "
                         "tokenized with a different vocabulary, or is model.vocab_size too small?")


class TokenEmbedding(nn.Module):
    """A learned table ``[vocab_size, features]`` looked up by integer ids (checked against ``vocab_size``).

    ``ids: [batch, time] -> [batch, time, features]``; entries start at N(0, 1/features) so a sum with a
    unit-scale positional encoding is not dominated by either.
    """

    vocab_size: int
    features: int

    @nn.compact
    def __call__(self, ids: jax.Array) -> jax.Array:
        check_token_ids(ids, self.vocab_size)
        table = nn.Embed(self.vocab_size, self.features,
                         embedding_init=nn.initializers.normal(stddev=self.features ** -0.5), name="table")
        return table(ids)


def token_validity(ids: jax.Array, pad_id: int) -> jax.Array:
    """``[batch, time]``: True up to each sequence's last non-``pad_id`` token (padding sits at the end)."""
    is_token = ids != pad_id
    lengths = jnp.max(jnp.where(is_token, jnp.arange(1, ids.shape[1] + 1)[None, :], 0), axis=1)
    return jnp.arange(ids.shape[1])[None, :] < lengths[:, None]
