"""Overfitting and its cures: an MLP on 1,000 MNIST images, with dropout, L2 and early stopping, against none.

`jaxdl train experiments/overfitting.py --workdir runs/overfit_regularized` trains the regularized model;
the unregularized baseline is
`jaxdl train experiments/overfitting.py --workdir runs/overfit_plain --config.model.dropout_rate=0.0
--config.loss.l2=0.0 --config.train.early_stopping.patience=None
--config.train.early_stopping.restore_best=False`.
Both evaluate the final model on the training images in inference mode (`train.evaluate_train`), so the
train-validation gap compares like with like.
"""

from jaxdl.config import default_config


def get_config():
    config = default_config()
    config.name = "overfitting"
    config.data.name = "mnist"
    config.data.train_limit = 1000
    config.data.batch_size = 50
    config.data.normalize = True
    config.model = dict(name="mlp", hidden_sizes=(512, 512), activation="relu", dropout_rate=0.5)
    config.loss.l2 = 1e-2  # l2 * (sum of squared kernel weights), added to the loss
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 1e-3
    config.train.num_epochs = 150  # the budget; early stopping ends the regularized run long before
    config.train.early_stopping.monitor = "val_loss"
    config.train.early_stopping.patience = 8
    config.train.evaluate_train = True
    return config
