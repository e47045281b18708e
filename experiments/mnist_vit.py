"""A small Vision Transformer on MNIST (7x7 patches -> 16 tokens + [CLS]).

`jaxdl train experiments/mnist_vit.py --workdir runs/mnist_vit`
"""

from jaxdl.config import default_config


def get_config():
    config = default_config()
    config.name = "mnist_vit"
    config.data.name = "mnist"
    config.data.batch_size = 128
    config.data.normalize = True
    config.data.augment = ("random_crop(padding=2)",)
    config.model = dict(name="vit", patch_size=7, d_model=64, num_heads=4, num_layers=4, mlp_dim=128,
                        dropout_rate=0.0, positional="learned", scan_layers=True)
    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 2e-3
    config.optimizer.weight_decay = 5e-2
    config.optimizer.clip_norm = 1.0
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_epochs = 1.0
    config.train.num_epochs = 10
    return config
