"""Fashion-MNIST with a VGG-style CNN (two stages of 3x3 convolutions with batch norm)."""

from jaxdl.config import default_config


def get_config():
    config = default_config()
    config.name = "fashion_cnn"
    config.data.name = "fashion_mnist"
    config.data.batch_size = 128
    config.data.normalize = True
    config.model = dict(name="convnet", channels=(32, 64), convs_per_block=2, kernel_size=3, batch_norm=True,
                        dense=(256,), dropout_rate=0.3)
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 2e-3
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_epochs = 0.5
    config.train.num_epochs = 12
    return config
