"""MNIST with a multilayer perceptron 784-512-512-10, dropout and AdamW."""

from jaxdl.config import default_config


def get_config():
    config = default_config()
    config.name = "mnist_mlp"
    config.data.name = "mnist"
    config.data.batch_size = 128
    config.data.normalize = True
    config.model = dict(name="mlp", hidden_sizes=(512, 512), activation="relu", dropout_rate=0.2)
    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.weight_decay = 1e-4
    config.optimizer.schedule = "cosine"
    config.train.num_epochs = 15
    return config
