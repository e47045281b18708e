import struct

import numpy as np
from tensorboardX.proto.event_pb2 import Event

from jaxdl.distributed.parallel import compile_eval_step, compile_train_step
from jaxdl.report.tensorboard import TensorBoardLogger
from jaxdl.training.loop import fit
from tests.training.helpers import blobs, small_setup


def scalar_metrics(directory):
    """Every (tag, step, value) in the TFRecord event files under ``directory``."""
    out = []
    for path in directory.glob("events.out.tfevents.*"):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            event = Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4
            out += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
    return out


def test_each_epoch_row_becomes_scalars_grouped_by_metric(tmp_path):
    _, state, step, eval_step, _ = small_setup()
    result = fit(state, train_step=compile_train_step(step), eval_step=compile_eval_step(eval_step),
                 train_data=blobs(64), validation_data=blobs(20, seed=3), batch_size=16, num_epochs=2,
                 progress=False, hooks=[TensorBoardLogger(tmp_path)])  # fit closes it (on_fit_end)
    scalars = scalar_metrics(tmp_path)
    interval = [s for s in scalars if s[0].startswith(("speed/", "optimizer/"))]  # each logging interval's
    scalars = [s for s in scalars if not s[0].startswith(("speed/", "optimizer/"))]
    keys = {"speed": ("examples_per_second", "step_seconds", "flops_per_second", "mfu"),
            "optimizer": ("grad_norm", "update_norm", "param_norm")}  # no schedule given: no learning_rate
    assert sorted({(tag, step) for tag, step, _ in interval}) == sorted(
        (f"{group}/{key}", row["step"]) for row in result.history for group in keys for key in keys[group])
    expected = [(f"{key.partition('_')[2]}/{key.partition('_')[0]}" if key.startswith(("train_", "val_")) else key,
                 row["step"], np.float32(value)) for row in result.history for key, value in row.items()
                if key not in ("epoch", "step")]
    assert sorted(scalars) == sorted(expected)
    assert {"loss/train", "loss/val", "accuracy/val", "epoch_seconds"} <= {tag for tag, _, _ in scalars}
