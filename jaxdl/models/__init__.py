"""Model families, one a file, and the registry that maps config names to them."""

from jaxdl.models.cnn import (
    VGG,
    VGG11,
    VGG13,
    VGG16,
    VGG19,
    ConvBlock,
    ConvNet,
    DenseHead,
    LeNet5,
    VGGSmall,
)
from jaxdl.models.cnn1d import SequenceCNN
from jaxdl.models.detect import GridDetector
from jaxdl.models.gan import GAN
from jaxdl.models.language_model import TransformerLM
from jaxdl.models.mlp import MLP
from jaxdl.models.mobilenet import MobileNet, efficientnet_lite0, mobilenet_v2
from jaxdl.models.registry import (
    available_models,
    create_model,
    model_constructor,
    model_fields,
    register_model,
)
from jaxdl.models.resnet import (
    ResNet,
    ResNet18,
    ResNet20,
    ResNet32,
    ResNet34,
    ResNet44,
    ResNet50,
    ResNet56,
    ResNet101,
    ResNet110,
    ResNet152,
)
from jaxdl.models.rnn import Forecaster, SequenceClassifier, SequenceTagger
from jaxdl.models.seq2seq import Seq2SeqTransformer
from jaxdl.models.transfer import TransferClassifier
from jaxdl.models.transformer import TransformerClassifier
from jaxdl.models.unet import UNet
from jaxdl.models.vit import ViT

register_model("mlp", MLP)
register_model("lenet5", LeNet5)
register_model("convnet", ConvNet)
register_model("vgg", VGG)
register_model("vgg11", VGG11)
register_model("vgg13", VGG13)
register_model("vgg16", VGG16)
register_model("vgg19", VGG19)
register_model("vgg_small", VGGSmall)
register_model("resnet", ResNet)
for _depth, _constructor in ((18, ResNet18), (20, ResNet20), (32, ResNet32), (34, ResNet34), (44, ResNet44), (50, ResNet50),
                             (56, ResNet56), (101, ResNet101), (110, ResNet110), (152, ResNet152)):
    register_model(f"resnet{_depth}", _constructor)
register_model("rnn_classifier", SequenceClassifier)
register_model("rnn_tagger", SequenceTagger)
register_model("rnn_forecaster", Forecaster)
register_model("cnn1d", SequenceCNN)
register_model("transformer_classifier", TransformerClassifier)
register_model("seq2seq_transformer", Seq2SeqTransformer)
register_model("transformer_lm", TransformerLM)
register_model("vit", ViT)
register_model("transfer", TransferClassifier)
register_model("dense_head", DenseHead)
register_model("mobilenet", MobileNet)
register_model("unet", UNet)
register_model("grid_detector", GridDetector)
register_model("gan", GAN)

__all__ = [
    "MLP", "MobileNet", "ResNet", "ResNet18", "ResNet20", "ResNet32", "ResNet34", "ResNet44", "ResNet50", "ResNet56",
    "ResNet101", "ResNet110", "ResNet152", "UNet", "GridDetector", "GAN", "TransferClassifier", "efficientnet_lite0", "mobilenet_v2", "Forecaster", "Seq2SeqTransformer", "TransformerClassifier", "TransformerLM", "ViT", "SequenceClassifier", "SequenceCNN", "SequenceTagger", "VGG", "VGG11", "VGG13", "VGG16", "VGG19", "VGGSmall", "ConvBlock", "ConvNet", "DenseHead", "LeNet5",
    "available_models", "create_model", "model_constructor", "model_fields", "register_model",
]
