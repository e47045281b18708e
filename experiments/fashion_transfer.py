"""Transfer learning with 100 labels per class: an ImageNet EfficientNet-Lite0 fine-tuned on 1,000 Fashion-MNIST images.

The 28x28 grey garments are resized to 96x96 and their channel repeated to RGB inside the model. The
pretrained backbone is restored from the Orbax cache (`jaxdl pretrained import efficientnet-lite0`, done
automatically on first use). Compare the modes on the same 1,000 images:
  --config.transfer.mode=feature_extraction   backbone frozen (no updates, no optimizer state), new head only
  --config.transfer.mode=fine_tune            the default: backbone at 0.1x the head's learning rate
  --config.transfer.mode=scratch              the same network from random weights
and `jaxdl train experiments/fashion_cnn.py --config.data.train_limit=1000`, the from-scratch CNN.
"""

from jaxdl.config import default_config


def get_config():
    config = default_config()
    config.name = "fashion_transfer"
    config.data.name = "fashion_mnist"
    config.data.train_limit = 1000  # stratified: 100 labelled images per class
    config.data.batch_size = 50
    config.data.eval_batch_size = 500
    config.data.validation_fraction = 0.025  # 1,500 validation images: evaluated every epoch
    config.data.augment = ("random_flip",)
    config.model = dict(name="transfer", input_size=96, input_channels=3, head_dropout=0.2)
    config.transfer.pretrained = "efficientnet-lite0"
    config.transfer.mode = "fine_tune"
    config.transfer.backbone_lr_scale = 0.1
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_epochs = 1.0
    config.train.num_epochs = 15
    config.train.early_stopping.restore_best = True
    return config
