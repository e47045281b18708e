"""One process of a 2-process CPU run (used by test_multihost.py) that trains with checkpoints into a shared
work directory; process 1 is sent SIGTERM while a chosen step runs. Prints ``stopped STEP`` and exits with
`Preempted.exit_status` when the run stops on the signal, ``finished STEP`` otherwise."""

import os
import signal
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")


def main(coordinator: str, process_id: int, workdir: str, signal_at: int) -> int:
    from jaxdl.checkpoint import CheckpointPolicy
    from jaxdl.distributed.parallel import make_parallel
    from jaxdl.distributed.runtime import initialize_distributed
    from jaxdl.training.loop import fit
    from jaxdl.training.preemption import Preempted
    from tests.training.helpers import blobs, small_setup

    initialize_distributed(coordinator, 2, process_id)
    parallel = make_parallel("mesh")
    _, state, step, eval_step, _ = small_setup()
    compiled, calls = parallel.compile_train_step(step), [0]

    def train_step(state, batch):
        calls[0] += 1
        if process_id == 1 and calls[0] == signal_at:
            os.kill(os.getpid(), signal.SIGTERM)
        return compiled(state, batch)

    try:
        result = fit(state, train_step=train_step, eval_step=parallel.compile_eval_step(eval_step),
                     train_data=blobs(16 * 40, seed=1), batch_size=16, num_epochs=6, workdir=workdir, progress=False,
                     parallel=parallel, checkpoint_policy=CheckpointPolicy(keep_latest=2, asynchronous=False))
    except Preempted as stop:
        print(f"stopped {stop.step}", flush=True)
        return stop.exit_status
    print(f"finished {int(jax.device_get(result.state.step))}", flush=True)
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
    sys.stdout.flush()
    os._exit(code)  # as `jaxdl train` ends (see jaxdl.cli.entry)
