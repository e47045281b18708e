"""Reads each weights file named on the command line in this process, under a memory limit, and prints one
JSON line per file: the arrays' digests, or the error's type and message; PyTorch's own reading (with
``weights_only=True``) beside it where PyTorch is installed. A crash or a hang shows as a missing line."""

import hashlib
import json
import resource
import sys

MEMORY_LIMIT = 1 << 30  # bytes of address space beyond what the process holds after its imports


def digests(arrays):
    return {name: [str(a.dtype), list(a.shape), hashlib.sha256(a.tobytes()).hexdigest()] for name, a in arrays.items()}


def main(paths):
    try:
        import torch
    except ImportError:
        torch = None
    from jaxdl.transfer.torch_checkpoint import read_state_dict

    with open("/proc/self/statm") as f:
        in_use = int(f.read().split()[0]) * resource.getpagesize()
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (in_use + MEMORY_LIMIT, hard))
    for path in paths:
        result = {"path": path}
        try:
            result["arrays"] = digests(read_state_dict(path))
        except Exception as error:  # recorded, not raised: the test decides which errors are clean
            result["error"], result["message"] = type(error).__name__, str(error)[:300]
        if torch is not None and "arrays" in result:
            try:
                loaded = torch.load(path, weights_only=True, map_location="cpu")
                result["torch"] = digests({k: v.numpy() for k, v in loaded.items()})
            except Exception as error:
                result["torch_error"] = type(error).__name__
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
