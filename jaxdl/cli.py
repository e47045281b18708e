"""The ``jaxdl`` command: ``train`` an experiment file, ``tune`` its hyperparameters, ``evaluate`` a finished run,
``report`` on it again from its files, ``predict`` with it, ``export`` it for serving, ``summary`` of an
experiment's model, ``lr-find`` a learning rate for it, ``pretrained list|import NAME`` the zoo of pretrained weights."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

from jaxdl.util.host_memory import keep_freed_host_memory


def _train(args: argparse.Namespace, overrides: list[str]) -> int:
    from jaxdl.util.workdir_lock import refuse_if_busy

    refuse_if_busy(args.workdir)  # before JAX is imported: a busy workdir fails in well under a second
    from jaxdl.config import load_config
    from jaxdl.distributed.runtime import initialize_distributed
    from jaxdl.experiment.run import train_and_evaluate

    if args.profile:
        overrides = [*overrides, f"train.profile={args.profile}"]
    config = load_config(args.experiment, overrides)
    if args.coordinator or args.num_processes is not None or args.process_id is not None or args.distributed:
        # Before any computation: every process of a multi-host run joins the same JAX runtime.
        initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    summary = train_and_evaluate(config, args.workdir, resume=True if args.resume else None,
                                 allow_changes=args.allow_change or ())
    test = summary.get("test", {})
    print(json.dumps({"experiment": summary["experiment"], "test": test, "validation": summary.get("validation"),
                      "total_seconds": round(summary["total_seconds"], 1)}, indent=2))
    return 0


def _evaluate(args: argparse.Namespace, overrides: list[str]) -> int:
    from jaxdl.experiment.evaluate import evaluate_workdir

    print(json.dumps(evaluate_workdir(args.workdir, overrides=overrides), indent=2))
    return 0


def _tune(args: argparse.Namespace, overrides: list[str]) -> int:
    from jaxdl.util.workdir_lock import refuse_if_busy

    refuse_if_busy(args.workdir)
    from jaxdl.config import load_config, parse_value
    from jaxdl.tune.run import run_tuning

    config = load_config(args.experiment, overrides)
    if args.grid:
        config.search.kind = "grid"
        config.search.space = tuple((path.removeprefix("config."), [parse_value(v) for v in values.split(",") if v])
                                    for path, _, values in (g.partition("=") for g in args.grid))
    elif args.random:
        config.search.kind = "random"
        config.search.space = tuple((path.removeprefix("config."), dist)
                                    for path, _, dist in (r.partition("=") for r in args.random))
    elif args.kfold:
        config.search.kind, config.search.k = "kfold", args.kfold
    if args.trials:
        config.search.trials = args.trials
    if args.metric:
        config.search.metric = args.metric
    print(json.dumps(run_tuning(config, args.workdir), indent=2, default=float))
    return 0


def _lr_find(args: argparse.Namespace, overrides: list[str]) -> int:
    from jaxdl.util.workdir_lock import refuse_if_busy

    refuse_if_busy(args.workdir)
    from jaxdl.config import load_config
    from jaxdl.tune.lr_find import find_learning_rate

    config = load_config(args.experiment, overrides)
    result = find_learning_rate(config, args.min_rate, args.max_rate, args.num_rates, args.steps, args.workdir)
    print(json.dumps(result.summary(), indent=2))
    return 0


def _report(args: argparse.Namespace, overrides: list[str]) -> int:
    from jaxdl.report.classification import write_report

    if overrides:
        raise SystemExit(f"report takes no config overrides, got {overrides}")
    for path in write_report(args.workdir):
        print(path)
    return 0


def _predict(args: argparse.Namespace, overrides: list[str]) -> int:
    import numpy as np

    from jaxdl.api import load

    if overrides:
        raise SystemExit(f"predict takes no config overrides, got {overrides}")
    loaded = np.load(args.inputs, allow_pickle=False)  # never unpickles: an untrusted file is data only
    if hasattr(loaded, "files"):  # .npz: one array per model input
        x = {k: loaded[k] for k in loaded.files}
        loaded.close()
    else:
        x = loaded
    outputs = load(args.workdir).predict(x, args.batch_size)
    np.save(args.output, outputs)
    print(json.dumps({"output": args.output, "shape": list(np.shape(outputs))}))
    return 0


def _export(args: argparse.Namespace, overrides: list[str]) -> int:
    import pathlib

    from jaxdl.api import load

    if overrides:
        raise SystemExit(f"export takes no config overrides, got {overrides}")
    if args.format == "onnx":
        from jaxdl.api.onnx_export import export_onnx

        path = export_onnx(load(args.workdir), args.output or pathlib.Path(args.workdir) / "model.onnx")
        print(json.dumps({"artifact": str(path)}))
        return 0
    path = load(args.workdir).export(args.output or pathlib.Path(args.workdir) / "model.jaxexport")
    print(json.dumps({"artifact": str(path), "input_spec": str(path.with_suffix(".json"))}))
    return 0


def _summary(args: argparse.Namespace, overrides: list[str]) -> int:
    from jaxdl.api import summary
    from jaxdl.config import load_config
    from jaxdl.data.pipeline import map_inputs
    from jaxdl.experiment.build import build_experiment

    exp = build_experiment(load_config(args.experiment, overrides))
    print(summary(exp.model, map_inputs(lambda a: a[:1], exp.data.train.x), exp.config.seed))
    return 0


def _pretrained(args: argparse.Namespace, overrides: list[str]) -> int:
    from jaxdl.transfer.zoo import ZOO, cache_dir, import_pretrained

    if overrides:
        raise SystemExit(f"pretrained takes no config overrides, got {overrides}")
    if args.action == "list":
        for name, entry in sorted(ZOO.items()):
            cached = (cache_dir(args.cache_dir) / name).is_dir()
            print(f"{name:20s} {'[imported] ' if cached else ''}{entry.description}")
        return 0
    if not args.name:
        raise ValueError(f"pretrained import needs a NAME; known ones are {sorted(ZOO)}")
    print(import_pretrained(args.name, args.cache_dir, force=args.force))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``jaxdl train EXPERIMENT.py --workdir DIR [--config.a.b=value ...]``, ``jaxdl tune EXPERIMENT.py
    --workdir DIR [--grid ...|--random ...|--kfold K]`` or ``jaxdl evaluate DIR``."""
    parser = argparse.ArgumentParser(prog="jaxdl", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train an experiment config into a work directory")
    train.add_argument("experiment", help="path to an experiment file defining get_config(), e.g. experiments/mnist_cnn.py")
    train.add_argument("--workdir", required=True, help="where logs, curves, checkpoints and summary.json go")
    train.add_argument("--profile", metavar="START:STOP",
                       help="write a jax.profiler trace of optimizer steps START..STOP to WORKDIR/profile "
                            "(open it with TensorBoard's profiler or Perfetto)")
    train.add_argument("--resume", action="store_true",
                       help="require a checkpoint in --workdir and continue from it (a workdir with checkpoints is "
                            "resumed anyway; this makes a missing one an error)")
    train.add_argument("--allow-change", action="append", metavar="KEY",
                       help="when resuming, accept a changed value of KEY (e.g. train.num_epochs to train longer); "
                            "repeat for several keys. Keys that change the model, optimizer or data order are refused")
    hosts = train.add_argument_group("multi-host (run the same command on every host)")
    hosts.add_argument("--coordinator", help="HOST:PORT of process 0, e.g. 10.0.0.1:1234")
    hosts.add_argument("--num-processes", type=int, help="how many processes take part")
    hosts.add_argument("--process-id", type=int, help="this process's index, 0 .. num-processes-1")
    hosts.add_argument("--distributed", action="store_true",
                       help="join a multi-host run configured by the environment (Cloud TPU, SLURM)")
    tune = commands.add_parser("tune", help="hyperparameter search or k-fold cross-validation of an experiment")
    tune.add_argument("experiment", help="experiment file; its config.search section is used unless overridden")
    tune.add_argument("--workdir", required=True, help="where search.csv/search.png/tune.json go")
    how = tune.add_mutually_exclusive_group()
    how.add_argument("--grid", action="append", metavar="FIELD=V1,V2,...",
                     help="a grid axis, e.g. --grid optimizer.learning_rate=1e-4,3e-4,1e-3 (repeat for more)")
    how.add_argument("--random", action="append", metavar="FIELD=DIST",
                     help="a random axis, e.g. --random 'optimizer.learning_rate=loguniform(1e-4, 1e-2)'")
    how.add_argument("--kfold", type=int, metavar="K", help="stratified K-fold cross-validation instead")
    tune.add_argument("--trials", type=int, help="random search: how many draws")
    tune.add_argument("--metric", help="validation metric to rank by (default val_accuracy)")
    tune.epilog = ("Trials that share a program train vmapped or one after another, whichever a timing on the first "
                   "batch says is faster; force one with --config.search.schedule=vmap (or sequential).")
    lr_find = commands.add_parser("lr-find", help="a learning-rate range test: log-spaced constant rates trained side "
                                  "by side as vmapped trials; writes lr_find.json, lr_find.png and suggests a rate")
    lr_find.add_argument("experiment", help="experiment file; its model, data and optimizer are tested")
    lr_find.add_argument("--workdir", required=True, help="where lr_find.json and lr_find.png go")
    lr_find.add_argument("--min-rate", type=float, default=1e-5)
    lr_find.add_argument("--max-rate", type=float, default=1.0)
    lr_find.add_argument("--num-rates", type=int, default=12, help="trials, log-spaced (memory grows with it)")
    lr_find.add_argument("--steps", type=int, default=100, help="optimizer steps per trial")
    evaluate = commands.add_parser("evaluate", help="evaluate the checkpoint of a finished run (overrides: only "
                                   "--config.data.test_time_augment and --config.data.eval_batch_size)")
    evaluate.add_argument("workdir")
    report = commands.add_parser("report", help="rebuild a run's curves, confusion matrix and report from its files")
    report.add_argument("workdir")
    predict = commands.add_parser("predict", help="predict with a finished run on inputs in a .npy (or .npz, one "
                                  "array per model input) file")
    predict.add_argument("workdir")
    predict.add_argument("inputs", help="a .npy array of inputs [n, ...], or an .npz of named inputs")
    predict.add_argument("--output", default="predictions.npy", help="where the outputs go (.npy)")
    predict.add_argument("--batch-size", type=int, default=256)
    export = commands.add_parser("export", help="write a finished run's model as a jax.export artifact (weights "
                                 "inside, any batch size) that runs without jaxdl")
    export.add_argument("workdir")
    export.add_argument("--output", help="the artifact's path (default WORKDIR/model.jaxexport or WORKDIR/model.onnx)")
    export.add_argument("--format", choices=("jax", "onnx"), default="jax",
                        help="jax: a jax.export artifact (default); onnx: an ONNX model (jax2onnx), checked with ONNX Runtime")
    summary = commands.add_parser("summary", help="an experiment's model: layers, shapes, parameters, FLOPs")
    summary.add_argument("experiment")
    pretrained = commands.add_parser("pretrained", help="list the pretrained zoo, or import NAME into the Orbax cache")
    pretrained.add_argument("action", choices=("list", "import"))
    pretrained.add_argument("name", nargs="?", help="a zoo name, e.g. efficientnet-lite0 (see `jaxdl pretrained list`)")
    pretrained.add_argument("--cache-dir", help="where converted checkpoints go (default $JAXDL_CACHE/pretrained "
                                                "or ~/.cache/jaxdl/pretrained)")
    pretrained.add_argument("--force", action="store_true", help="convert again even if the cache has it")
    args, rest = parser.parse_known_args(argv)
    overrides = []
    for item in rest:
        if not item.startswith("--config."):
            parser.error(f"unrecognised argument {item!r}; config overrides look like --config.optimizer.learning_rate=3e-4")
        overrides.append(item[2:])
    try:
        commands_by_name = {"train": _train, "evaluate": _evaluate, "tune": _tune, "report": _report,
                            "pretrained": _pretrained, "predict": _predict, "export": _export, "summary": _summary,
                            "lr-find": _lr_find}
        return commands_by_name[args.command](args, overrides)
    except (ValueError, OSError, FloatingPointError, ImportError) as exc:  # OSError: a full disk; ImportError: an extra
        return _error(exc)
    except BaseException as exc:  # Preempted is a BaseException, as KeyboardInterrupt is
        # Imported here, not at the top: JAX loads with them, and a refusal before training should not wait for it.
        from jaxdl.checkpoint import CheckpointError
        from jaxdl.training.preemption import Preempted

        if isinstance(exc, CheckpointError):
            return _error(exc)
        if isinstance(exc, Preempted):  # the checkpoint of the step it stopped at is on disk
            print(f"jaxdl: {exc}", file=sys.stderr)
            return exc.exit_status
        raise


def _error(exc: BaseException) -> int:
    print(f"jaxdl: error: {exc}", file=sys.stderr)
    return 2


def entry() -> None:
    """The ``jaxdl`` console command: `main`'s status as the process's. After a preemption stop (status 143 or 130,
    with the checkpoint already on disk) the process ends at once with ``os._exit``: interpreter shutdown would stop
    library threads still parked in native code (TensorStore's, the collectives'), which can abort the process
    and turn a clean, saved stop into a crash status. The process keeps the host memory XLA frees between steps
    (`jaxdl.util.host_memory`): this command owns it, and its steps then reuse memory instead of faulting it in."""
    keep_freed_host_memory()
    code = main()
    if code in PREEMPTED_STATUSES:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


PREEMPTED_STATUSES = (128 + 15, 128 + 2)  # SIGTERM, SIGINT: see jaxdl.training.preemption


if __name__ == "__main__":
    entry()
