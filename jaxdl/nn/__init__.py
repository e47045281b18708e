"""Building blocks: activations, initializers, convolution, transposed convolution and pooling."""

from jaxdl.nn.activations import (
    ACTIVATIONS,
    gelu,
    get_activation,
    leaky_relu,
    relu,
    sigmoid,
    softmax,
    tanh,
)
from jaxdl.nn.conv import Conv2D, conv2d
from jaxdl.nn.conv1d import Conv1D, conv1d
from jaxdl.nn.conv_transpose import ConvTranspose2D, conv_transpose2d
from jaxdl.nn.initializers import available_initializers, get_initializer
from jaxdl.nn.pooling import avg_pool, get_pool, global_avg_pool, max_pool

__all__ = [
    "ACTIVATIONS", "Conv1D", "Conv2D", "conv1d", "ConvTranspose2D", "avg_pool", "available_initializers", "conv2d", "conv_transpose2d",
    "gelu", "get_activation", "get_initializer", "get_pool", "global_avg_pool", "leaky_relu", "max_pool", "relu",
    "sigmoid", "softmax", "tanh",
]
