"""The ``jaxdl`` command: ``train`` an experiment file, ``evaluate`` a finished run."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence


def _train(args: argparse.Namespace, overrides: list[str]) -> int:
    from jaxdl.config import load_config
    from jaxdl.train.experiment import train_and_evaluate
    from jaxdl.train.parallel import initialize_distributed

    config = load_config(args.experiment, overrides)
    if args.coordinator or args.num_processes is not None or args.process_id is not None or args.distributed:
        # Before any computation: every process of a multi-host run joins the same JAX runtime.
        initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    summary = train_and_evaluate(config, args.workdir)
    test = summary.get("test", {})
    print(json.dumps({"experiment": summary["experiment"], "test": test, "validation": summary.get("validation"),
                      "total_seconds": round(summary["total_seconds"], 1)}, indent=2))
    return 0


def _evaluate(args: argparse.Namespace, overrides: list[str]) -> int:
    from jaxdl.train.experiment import evaluate_workdir

    if overrides:
        raise SystemExit(f"evaluate takes no config overrides, got {overrides}")
    print(json.dumps(evaluate_workdir(args.workdir), indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``jaxdl train EXPERIMENT.py --workdir DIR [--config.a.b=value ...]`` or ``jaxdl evaluate DIR``."""
    parser = argparse.ArgumentParser(prog="jaxdl", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train an experiment config into a work directory")
    train.add_argument("experiment", help="path to an experiment file defining get_config(), e.g. experiments/mnist_cnn.py")
    train.add_argument("--workdir", required=True, help="where logs, curves, checkpoints and summary.json go")
    hosts = train.add_argument_group("multi-host (run the same command on every host)")
    hosts.add_argument("--coordinator", help="HOST:PORT of process 0, e.g. 10.0.0.1:1234")
    hosts.add_argument("--num-processes", type=int, help="how many processes take part")
    hosts.add_argument("--process-id", type=int, help="this process's index, 0 .. num-processes-1")
    hosts.add_argument("--distributed", action="store_true",
                       help="join a multi-host run configured by the environment (Cloud TPU, SLURM)")
    evaluate = commands.add_parser("evaluate", help="evaluate the checkpoint of a finished run")
    evaluate.add_argument("workdir")
    args, rest = parser.parse_known_args(argv)
    overrides = []
    for item in rest:
        if not item.startswith("--config."):
            parser.error(f"unrecognised argument {item!r}; config overrides look like --config.optimizer.learning_rate=3e-4")
        overrides.append(item[2:])
    try:
        return {"train": _train, "evaluate": _evaluate}[args.command](args, overrides)
    except (ValueError, FileNotFoundError, FloatingPointError) as exc:
        print(f"jaxdl: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
