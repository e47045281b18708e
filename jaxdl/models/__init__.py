"""Model families, one a file, and the registry that maps config names to them."""

from jaxdl.models.cnn import VGG, VGG11, VGG13, VGG16, VGG19, ConvBlock, ConvNet, DenseHead, LeNet5, VGGSmall
from jaxdl.models.mlp import MLP
from jaxdl.models.registry import available_models, create_model, model_constructor, model_fields, register_model

register_model("mlp", MLP)
register_model("lenet5", LeNet5)
register_model("convnet", ConvNet)
register_model("vgg", VGG)
register_model("vgg11", VGG11)
register_model("vgg13", VGG13)
register_model("vgg16", VGG16)
register_model("vgg19", VGG19)
register_model("vgg_small", VGGSmall)

__all__ = [
    "MLP", "VGG", "VGG11", "VGG13", "VGG16", "VGG19", "VGGSmall", "ConvBlock", "ConvNet", "DenseHead", "LeNet5",
    "available_models", "create_model", "model_constructor", "model_fields", "register_model",
]
