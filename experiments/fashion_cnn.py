"""Fashion-MNIST with a batch-normalised CNN (3 conv blocks) and random left-right flips."""

from jaxdl.config import default_config


def get_config():
    config = default_config()
    config.name = "fashion_cnn"
    config.data.name = "fashion_mnist"
    config.data.batch_size = 128
    config.data.normalize = True
    config.data.augment = ("random_flip",)  # garments are centred: shifts only slowed fitting (90.8% with them)
    config.model = dict(name="convnet", channels=(16, 32, 64), kernel_size=3, batch_norm=True,
                        dense=(256,), dropout_rate=0.1)
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 3e-3
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_epochs = 0.5
    config.train.num_epochs = 12
    return config
