#!/usr/bin/env python3
"""Independent reference for the runtime's Segmenter: onnxruntime with numpy pre/post-processing.

Usage: segment_reference.py model.onnx rgb.npy probs.npy

rgb.npy: float32 [H, W, 3], RGB values 0..255 (the frame as captured). The model's own metadata
(`contextrast.meta`: mean, std) normalises it; the logits are softmaxed over classes; probs.npy
is float32 [C, H, W]. Nothing here shares code with the Rust runtime.
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    model_path, rgb_path, out_path = sys.argv[1:]
    model = onnx.load(model_path)
    props = {p.key: p.value for p in model.metadata_props}
    if "contextrast.meta" not in props:
        print(f"{model_path}: no contextrast.meta metadata", file=sys.stderr)
        return 1
    meta = json.loads(props["contextrast.meta"])
    mean = np.asarray(meta["mean"], dtype=np.float32)
    std = np.asarray(meta["std"], dtype=np.float32)
    rgb = np.load(rgb_path).astype(np.float32)
    x = ((rgb / 255.0 - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)
    # Sides must be multiples of the network's stride: pad bottom/right with 0 (the mean
    # colour after normalisation) and crop the output back.
    h, w = rgb.shape[:2]
    m = int(meta["size_multiple"])
    ph, pw = -(-h // m) * m, -(-w // m) * m
    x = np.pad(x, ((0, 0), (0, 0), (0, ph - h), (0, pw - w)))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
    (y, *_) = sess.run(None, {sess.get_inputs()[0].name: x})
    z = y[0, :, :h, :w].astype(np.float64)
    z = np.exp(z - z.max(axis=0, keepdims=True))
    z /= z.sum(axis=0, keepdims=True)
    np.save(out_path, z.astype(np.float32))
    return 0


if __name__ == "__main__":
    sys.exit(main())
