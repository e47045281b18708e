"""Export a trained model and serve it without jaxdl: a `jax.export` artifact (weights inside, any batch
size) behind a small JSON-over-HTTP server that imports only JAX and NumPy, and the same model as ONNX
for stacks that do not run JAX (when the onnx extra and jax2onnx are installed).

    python -m examples.export_and_serve
"""

from __future__ import annotations

import http.server
import json
import pathlib
import tempfile
import threading
import urllib.request

import numpy as np


def serve(artifact: pathlib.Path, port: int = 0) -> http.server.ThreadingHTTPServer:
    """A server answering ``POST /predict`` with ``{"x": [[...], ...]}`` by ``{"y": [...]}``: the artifact's
    function, deserialised once. Only JAX and NumPy are imported, not jaxdl or the model's code."""
    import jax

    exported = jax.export.deserialize(bytearray(artifact.read_bytes()))
    spec = json.loads(artifact.with_suffix(".json").read_text())

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
            try:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                x = np.asarray(body["x"], spec["dtype"])
                if list(x.shape[1:]) != spec["shape"][1:]:
                    raise ValueError(f"x must have shape [batch, {', '.join(map(str, spec['shape'][1:]))}], got {list(x.shape)}")
                reply, status = {"y": np.asarray(exported.call(x)).tolist()}, 200
            except (ValueError, KeyError, TypeError) as error:
                reply, status = {"error": str(error)}, 400
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:  # keep the example's output to its results
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(quick: bool = False) -> dict[str, float]:
    """Train on digits, export, serve on localhost, and compare the served outputs with `jaxdl.predict`."""
    import flax.linen as nn

    import jaxdl as jd

    flatten = nn.Sequential([lambda x: x.reshape(x.shape[0], -1), nn.Dense(64), nn.relu, nn.Dense(10)])
    run = jd.fit(flatten, "digits", loss="sparse_categorical_crossentropy",
                 epochs=2 if quick else 20, batch_size=64, progress=False)
    from jaxdl.config import default_config
    from jaxdl.data import load_dataset

    config = default_config().data
    config.name = "digits"
    test = load_dataset(config).test
    with tempfile.TemporaryDirectory() as directory:
        artifact = run.export(pathlib.Path(directory) / "digits.jaxexport")
        server = serve(artifact)
        try:
            request = urllib.request.Request(f"http://127.0.0.1:{server.server_address[1]}/predict",
                                             json.dumps({"x": test.x[:5].tolist()}).encode(),
                                             {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=60) as response:
                served = np.asarray(json.loads(response.read())["y"])
        finally:
            server.shutdown()
        difference = float(np.max(np.abs(served - run.predict(test.x[:5]))))
        print(f"served predictions {served.argmax(-1).tolist()}, labels {test.y[:5].tolist()}, "
              f"largest difference from jaxdl.predict {difference:.2e}")
        result = {"served_vs_predict": difference}
        try:
            onnx_path = jd.export_onnx(run, pathlib.Path(directory) / "digits.onnx")
            print(f"ONNX model written and checked with ONNX Runtime: {onnx_path.name}")
            result["onnx"] = 1.0
        except ImportError as missing:
            print(f"ONNX export skipped: {missing}")
    return result


if __name__ == "__main__":
    main()
