"""The backbone for `digits_transfer`: the `mnist_cnn` network trained on MNIST digits 0-4 only.

Run first: `jaxdl train experiments/digits_pretrain.py --workdir runs/digits_pretrain`. Its Orbax checkpoint
(the returned state) becomes the backbone of `digits_transfer`, which learns digits 5-9 from few labels.
"""

from jaxdl.config import default_config


def get_config():
    config = default_config()
    config.name = "digits_pretrain"
    config.data.name = "mnist"
    config.data.classes = (0, 1, 2, 3, 4)
    config.data.batch_size = 128
    config.data.normalize = True
    config.data.augment = ("random_crop(padding=2)",)
    config.model = dict(name="convnet", channels=(16, 32, 64), kernel_size=3, padding="SAME", pool="max",
                        batch_norm=True, dense=(128,), dropout_rate=0.1)
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 3e-3
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_epochs = 0.5
    config.train.num_epochs = 4
    return config
