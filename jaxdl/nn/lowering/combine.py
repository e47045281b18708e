"""One function from several linear lowerings: the forward pass from one, each argument's derivative from
another (`combine`), so every pass of a convolution can run through its own fastest lowering."""

from __future__ import annotations

import functools
import operator
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero


def forward_and_tangent(candidates: Mapping[str, Callable[..., jax.Array]], forward: str, gradients: Mapping[int, str],
                        primals: tuple, tangents: tuple) -> tuple[jax.Array, jax.Array]:
    """The value from ``candidates[forward]`` and the tangent as the sum over differentiated arguments ``i`` of
    ``candidates[gradients[i]]`` with argument ``i`` replaced by its tangent (exact for functions linear in
    each argument, so each term may come from a different candidate)."""
    out = candidates[forward](*primals)
    terms = [candidates[gradients[i]](*primals[:i], tangent, *primals[i + 1:])
             for i, tangent in enumerate(tangents) if not isinstance(tangent, SymbolicZero)]
    return out, functools.reduce(operator.add, terms) if terms else jnp.zeros_like(out)


def combine(candidates: Mapping[str, Callable[..., jax.Array]], forward: str,
            gradients: Mapping[int, str]) -> Callable[..., jax.Array]:
    """One function that runs ``candidates[forward]`` and differentiates argument ``i`` through
    ``candidates[gradients[i]]`` (reverse mode transposes that candidate's linear map).

    The candidates must be linear in each argument separately (a convolution in its image and in its kernel):
    then the derivative along tangents ``(t_0, t_1, ...)`` is ``sum_i f(x_0, .., t_i, .., x_n)``. A
    `jax.custom_jvp`, so forward mode, reverse mode and higher derivatives all work; differentiating an
    argument missing from ``gradients`` is an error.
    """
    @jax.custom_jvp
    def combined(*args):
        return candidates[forward](*args)

    def jvp(primals, tangents):
        for i, tangent in enumerate(tangents):
            if not isinstance(tangent, SymbolicZero) and i not in gradients:
                raise ValueError(f"combine: argument {i} is differentiated, but no candidate was chosen for its "
                                 f"gradient (chosen for {sorted(gradients)})")
        return forward_and_tangent(candidates, forward, gradients, primals, tangents)

    combined.defjvp(jvp, symbolic_zeros=True)
    return combined
