"""The classic two-stage transfer recipe, in code: ImageNet's MobileNetV2 under a new head for scikit-learn's
digits. Stage 1 trains the head alone (Dense 256 relu, dropout 0.5) on the frozen backbone; stage 2 continues
from stage 1 with the backbone's top 3 blocks unfrozen at a tenth of a ten times lower rate, the rest still
frozen (bitwise: frozen parameters receive exact zero updates, and the backbone's BatchNorm keeps its ImageNet
statistics).

    python -m examples.two_stage_transfer
"""

from __future__ import annotations

import jaxdl as jd
from jaxdl.config import default_config
from jaxdl.data import load_dataset


def main(quick: bool = False) -> dict[str, dict[str, float]]:
    """Run both stages and report each one's test metrics."""
    config = default_config().data
    config.update(name="digits", train_limit=96 if quick else None, eval_limit=64 if quick else None)
    digits = load_dataset(config)  # 8x8 grey digits in [0, 1]; the model resizes them to RGB input_size^2
    backbone = jd.backbone("mobilenet-v2")
    head = jd.DenseHead(hidden_sizes=(256,), num_outputs=10, dropout_rate=0.5)
    model = backbone.with_head(head, input_size=32 if quick else 96, input_channels=3)
    common = dict(loss="sparse_categorical_crossentropy", batch_size=32, progress=not quick)
    stage1 = jd.fit(model, digits, epochs=1 if quick else 10, learning_rate=1e-3, initial_variables=backbone,
                    freeze=jd.Freeze("feature_extraction"), **common)
    stage2 = jd.fit(model, digits, epochs=1 if quick else 5, learning_rate=1e-4, initial_variables=stage1,
                    freeze=jd.Freeze("train_top", top_blocks=3, backbone_lr_scale=0.1), **common)
    result = {"head only": stage1.evaluate(digits.test), "top 3 blocks unfrozen": stage2.evaluate(digits.test)}
    for stage, metrics in result.items():
        print(f"{stage:>22}: test accuracy {metrics['accuracy']:.3f}")
    return result


if __name__ == "__main__":
    main()
