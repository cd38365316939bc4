#!/usr/bin/env python3
"""Runs an ONNX model through onnxruntime: the independent reference for the Rust exporter.

Usage: onnx_run.py model.onnx input.npy output.npy [--threads N]

The model is first validated with onnx.checker (full_check, which also runs shape inference),
so a structurally wrong export fails here even when onnxruntime would tolerate it. The single
input is fed from input.npy (float32); the first output is written to output.npy (float32).
Exit status 1 with a message naming the file on any failure.
"""
import argparse
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    args = ap.parse_args()

    try:
        onnx.checker.check_model(onnx.load(args.model), full_check=True)
    except Exception as e:  # noqa: BLE001 - report any checker failure the same way
        print(f"{args.model}: onnx.checker rejected the model: {e}", file=sys.stderr)
        return 1

    try:
        x = np.load(args.input)
    except Exception as e:  # noqa: BLE001
        print(f"{args.input}: cannot read .npy: {e}", file=sys.stderr)
        return 1
    if x.dtype != np.float32:
        print(f"{args.input}: expected float32, got {x.dtype}", file=sys.stderr)
        return 1

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, args.threads)
    opts.inter_op_num_threads = 1
    try:
        sess = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
        inputs = sess.get_inputs()
        if len(inputs) != 1:
            print(f"{args.model}: expected 1 input, found {len(inputs)}", file=sys.stderr)
            return 1
        (y, *_) = sess.run(None, {inputs[0].name: x})
    except Exception as e:  # noqa: BLE001
        print(f"{args.model}: onnxruntime failed: {e}", file=sys.stderr)
        return 1

    np.save(args.output, np.ascontiguousarray(y, dtype=np.float32))
    return 0


if __name__ == "__main__":
    sys.exit(main())
