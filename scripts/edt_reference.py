#!/usr/bin/env python3
"""Reference squared EDT for the Rust parity test (train/src/loss/edt_scipy_tests.rs).

Usage: edt_reference.py DIR
Reads DIR/cases.json, a list of {"name", "h", "w", "offset"}, and DIR/masks.bin, the masks as
one byte per pixel (0 or 1, row-major) concatenated; `offset` is each mask's first byte.
Writes DIR/edt.bin: scipy.ndimage.distance_transform_edt(mask) ** 2, rounded to integers, as
little-endian uint32 per pixel in the same order and at the same offsets (in pixels).
"""
import json
import pathlib
import sys

import numpy as np
from scipy import ndimage


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    d = pathlib.Path(sys.argv[1])
    cases = json.loads((d / "cases.json").read_text())
    masks = np.fromfile(d / "masks.bin", dtype=np.uint8)
    out = np.zeros(masks.shape, dtype="<u4")
    for c in cases:
        h, w, off = int(c["h"]), int(c["w"]), int(c["offset"])
        m = masks[off : off + h * w].reshape(h, w).astype(bool)
        # Squared distances are integers; the float sqrt round trip is exact after rounding.
        d2 = np.rint(ndimage.distance_transform_edt(m) ** 2)
        out[off : off + h * w] = d2.astype("<u4").ravel()
    out.tofile(d / "edt.bin")
    return 0


if __name__ == "__main__":
    sys.exit(main())
