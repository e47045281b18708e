"""In-house transfer: the CNN that `digits_pretrain` trained on digits 0-4 (restored from its Orbax checkpoint,
output layer removed) with a new 5-way head, fine-tuned on digits 5-9 from 100 labelled images per class.

`--config.transfer.mode=scratch` trains the same network from random weights on the same 500 images;
`feature_extraction` trains the new head alone. `--config.transfer.workdir` points at the pretraining run.
"""

from jaxdl.config import default_config


def get_config():
    config = default_config()
    config.name = "digits_transfer"
    config.data.name = "mnist"
    config.data.classes = (5, 6, 7, 8, 9)  # relabelled 0..4
    config.data.train_limit = 500  # stratified: 100 labelled images per class
    config.data.batch_size = 50
    config.data.normalize = True
    config.data.augment = ("random_crop(padding=2)",)
    config.model = dict(name="transfer", head_dropout=0.2)
    config.transfer.workdir = "runs/digits_pretrain"
    config.transfer.mode = "fine_tune"
    config.transfer.backbone_lr_scale = 0.1
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 3e-3
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_epochs = 1.0
    config.train.num_epochs = 30
    return config
