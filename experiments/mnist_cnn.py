"""MNIST with a small CNN: the default main job (`jaxdl train experiments/mnist_cnn.py --workdir runs/mnist_cnn`)."""

from jaxdl.config import default_config


def get_config():
    config = default_config()
    config.name = "mnist_cnn"
    config.data.name = "mnist"
    config.data.batch_size = 128
    config.data.normalize = True
    config.data.augment = ("random_crop(padding=2)",)  # random shifts of up to 2 pixels, inside the step
    config.model = dict(name="convnet", channels=(16, 32, 64), kernel_size=3, padding="SAME", pool="max",
                        batch_norm=True, dense=(128,), dropout_rate=0.1)
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 3e-3
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_epochs = 0.5
    config.train.num_epochs = 7
    return config
