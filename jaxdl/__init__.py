"""jaxdl: functional deep learning in JAX. Models are Flax Linen modules; training is a pure step."""

__version__ = "0.1.0"
