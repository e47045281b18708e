"""Where a compiled train step spends its time: an XLA profile of jaxdl's step, summarized by kind of operation.

Runs a workload's jaxdl step (as `benchmarks.run` times it) under `jax.profiler.trace`, reads the per-operation
events that XLA's runtime records (one per fused kernel or library call, named as the HLO instructions), and
joins them with the compiled HLO: each instruction's kind (convolution, matmul, reduction, patch
concatenation, layout copy/transpose, pad/slice, elementwise), its shape, and the JAX operation it came from,
which says whether it belongs to the forward pass, the backward pass (``transpose(jvp(...))``) or the optimizer.
Prints the time per step by kind and by pass, and the most expensive operations. Durations are summed over
operations; on several cores independent operations may overlap, so the sum can exceed the step's wall time.
Run: ``python -m benchmarks.profile_step --workloads lenet5,resnet20``.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import pathlib
import re
import tempfile
import time
from typing import Any

import jax
import jax.numpy as jnp

from benchmarks.workloads import WORKLOADS, jaxdl_step

_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%(\S+) = (\([^)]*\)|\S+?(?:\{[^}]*\})?) ([\w-]+)\(")  # tuples too
_COMPUTATION = re.compile(r"^%(\S+) .*\{\s*$")
_CALLS = re.compile(r"calls=%([\w.-]+)")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_TARGET = re.compile(r'custom_call_target="([^"]*)"')
ONEDNN_KINDS = {"conv": "oneDNN convolution", "max_pool": "oneDNN pooling", "batch_norm": "oneDNN batch norm",
                "lstm": "oneDNN LSTM"}  # jaxdl's custom calls by a word of their target's name
KINDS = [  # the first that a fused computation contains names it
    ("convolution", {"convolution"}), ("matmul", {"dot", "custom-call"}), ("reduction", {"reduce", "reduce-window"}),
    ("scatter/gather", {"scatter", "gather", "select-and-scatter"}), ("concatenate", {"concatenate"}),
    ("layout copy/transpose", {"copy", "transpose"}), ("pad/slice", {"pad", "slice", "dynamic-slice", "dynamic-update-slice"}),
]


def _kind(opcodes: set[str]) -> str:
    for kind, members in KINDS:
        if opcodes & members:
            return kind
    return "elementwise"


def parse_hlo(text: str) -> dict[str, dict[str, str]]:
    """Every instruction of a compiled HLO module by name: ``{"kind", "shape", "op_name"}``, fusions classified
    by the operations inside them (and named after the JAX operation of their heaviest member)."""
    computations: dict[str, list[tuple[str, str, str, str, str]]] = collections.defaultdict(list)
    current = None
    line_of: dict[str, str] = {}
    for line in text.splitlines():
        header = _COMPUTATION.match(line)
        if header:
            current = header.group(1)
            continue
        match = _INSTRUCTION.match(line)
        if match and current is not None:
            name, shape, opcode = match.groups()
            line_of[name] = line
            calls = _CALLS.search(line)
            op_name = _OP_NAME.search(line)
            computations[current].append((name, shape, opcode, calls.group(1) if calls else "", op_name.group(1) if op_name else ""))
    instructions = {}
    for members in computations.values():
        for name, shape, opcode, calls, op_name in members:
            if opcode == "fusion" and calls in computations:
                inner = computations[calls]
                kind = _kind({m[2] for m in inner})
                heavy = [m[4] for m in inner if m[4] and _kind({m[2]}) == kind] or [m[4] for m in inner if m[4]]
                op_name = heavy[0] if heavy else op_name
            elif opcode == "custom-call" and (target := _TARGET.search(line_of[name])) and "jaxdl_onednn" in target.group(1):
                kind = next(k for word, k in ONEDNN_KINDS.items() if word in target.group(1))
            else:
                kind = _kind({opcode})
            instructions[name] = {"kind": kind, "shape": shape.split("{")[0], "op_name": op_name}
    return instructions


def _pass(op_name: str) -> str:
    if "transpose(" in op_name:
        return "backward"
    if "jvp(" in op_name:
        return "forward"
    return "optimizer/other"


def profile(step: Any, state: Any, batch: Any, steps: int) -> dict[str, Any]:
    """Profile ``steps`` calls of a jitted ``step`` (after a warm-up); per-step time by instruction. The program
    profiled is the one whose HLO is parsed: compiled once, here."""
    compiled = step.lower(state, batch).compile()
    hlo = parse_hlo(compiled.as_text())
    step = compiled
    for _ in range(3):
        state, _ = step(state, batch)
    jax.block_until_ready(state)
    with tempfile.TemporaryDirectory() as directory:
        start = time.perf_counter()
        with jax.profiler.trace(directory, create_perfetto_trace=True):
            for _ in range(steps):
                state, _ = step(state, batch)
            jax.block_until_ready(state)
        wall_ms = (time.perf_counter() - start) / steps * 1e3
        trace_file = next(pathlib.Path(directory).rglob("perfetto_trace.json.gz"))
        events = json.load(gzip.open(trace_file))
    events = events["traceEvents"] if isinstance(events, dict) else events
    per_op: dict[str, float] = collections.Counter()
    for event in events:
        if event.get("ph") == "X" and event.get("name") in hlo:
            per_op[event["name"]] += event.get("dur", 0.0) / 1e3 / steps
    return {"wall_ms": wall_ms, "per_op": per_op, "hlo": hlo}


def summarize(name: str, result: dict[str, Any], top: int) -> None:
    """Print time per step by kind of operation, by pass, and the ``top`` operations."""
    per_op, hlo = result["per_op"], result["hlo"]
    total = sum(per_op.values())
    print(f"\n## {name}: {result['wall_ms']:.1f} ms/step wall (profiled), {total:.1f} ms/step in {len(per_op)} operations")
    for title, key in (("kind", lambda op: hlo[op]["kind"]), ("pass", lambda op: _pass(hlo[op]["op_name"]))):
        groups: dict[str, float] = collections.Counter()
        for op, ms in per_op.items():
            groups[key(op)] += ms
        print(f"{'by ' + title:28s} {'ms/step':>9s} {'share':>7s}")
        for group, ms in sorted(groups.items(), key=lambda kv: -kv[1]):
            print(f"{group:28s} {ms:9.2f} {ms / total:6.1%}")
    print(f"{'top operations':28s} {'ms/step':>9s} {'share':>7s}  {'shape':24s} from")
    for op, ms in sorted(per_op.items(), key=lambda kv: -kv[1])[:top]:
        source = re.sub(r"^jit\([^)]*\)/", "", hlo[op]["op_name"])
        print(f"{hlo[op]['kind'][:28]:28s} {ms:9.2f} {ms / total:6.1%}  {hlo[op]['shape'][:24]:24s} {source[-90:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default="lenet5,resnet20", help=f"comma-separated, from {list(WORKLOADS)}")
    parser.add_argument("--steps", type=int, default=10, help="profiled steps")
    parser.add_argument("--top", type=int, default=12, help="operations listed")
    args = parser.parse_args()
    unknown = sorted(set(args.workloads.split(",")) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown workloads {unknown}; valid ones are {list(WORKLOADS)}")
    print(f"# profile_step {time.strftime('%Y-%m-%d')}: jax {jax.__version__}, backend {jax.default_backend()}")
    for name in args.workloads.split(","):
        workload = WORKLOADS[name]
        step, state = jaxdl_step(workload)
        batch = jax.device_put({k: jnp.asarray(v) for k, v in workload.batch(0).items()})
        summarize(workload.name, profile(step, state, batch, args.steps), args.top)


if __name__ == "__main__":
    main()
