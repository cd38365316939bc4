#!/usr/bin/env python3
"""onnxruntime's side of `contextrast bench infer`: the same ONNX file, input size and thread
count as tract, timed the same way (median of REPS runs after WARMUP).

Usage: bench_ort.py model.onnx H W THREADS REPS WARMUP  → prints {"median_ms": .., "min_ms": ..}
"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort


def main() -> int:
    model, h, w, threads, reps, warmup = sys.argv[1], *map(int, sys.argv[2:7])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(1).standard_normal((1, 3, h, w), dtype=np.float32)
    times = []
    for i in range(warmup + reps):
        t = time.perf_counter()
        sess.run(None, {name: x})
        if i >= warmup:
            times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    print(json.dumps({"median_ms": times[len(times) // 2], "min_ms": times[0]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
