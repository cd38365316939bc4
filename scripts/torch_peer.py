#!/usr/bin/env python3
"""PyTorch peer of the training engine: ContextrastNet, cross-entropy and the Contextrast loss
(L_PA with BANE), written the way a PyTorch user would, from docs/METHOD.md.

It serves two purposes:
- an independent reference: `loss` and `step` read a case written by the Rust tests
  (train/tests/torch_peer_parity.rs) and write PyTorch's loss, gradients, samples and updated
  parameters back, so the engine's numbers and its hash-keyed sampling are checked against
  autograd;
- a benchmark peer: `bench` times the same training step and the loss alone on the same
  shapes as `contextrast bench train`, with peak GPU memory (docs/BENCHMARKS.md).

Usage:
  torch_peer.py loss  CASE_DIR          # L_PA on z1..z4.npy, labels.npy, pred.npy, case.json
  torch_peer.py step  CASE_DIR          # one SGD step from params/*.npy, x.npy, labels.npy
  torch_peer.py bench [--device cuda] [--batch 8] [--size 512] [--steps 20]
                      [--loss ce|ccl|contextrast] [--json OUT] [--tf32]
"""
import argparse
import json
import math
import pathlib
import resource
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

IGNORE = 255
SCALES = 4
STRIDES = (4, 8, 16, 32)
CLASS_IDS = 256
M64 = (1 << 64) - 1
STEP_MULTIPLIER = 0xD6E8FEB86659FD93

# --- the network (train/src/model.rs) ------------------------------------------------------


class ConvBnRelu(nn.Module):
    def __init__(self, c_in, c_out, k, stride):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def up(x, factor):
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


class ContextrastNet(nn.Module):
    """Same layers, names and order as contextrast_net(): encoder at strides 4-32, FPN decoder,
    head at stride 4, four projection heads (Conv1x1-BN-ReLU-Conv1x1-L2)."""

    def __init__(self, classes, width=16, decoder=32, proj_dim=64):
        super().__init__()
        w, d = width, decoder
        chans = [w, 2 * w, 4 * w, 8 * w]
        enc = {"stem1": ConvBnRelu(3, w, 3, 2), "stem2": ConvBnRelu(w, w, 3, 2)}
        for i, c in enumerate(chans):
            if i > 0:
                enc[f"s{i + 1}a"] = ConvBnRelu(chans[i - 1], c, 3, 2)
            enc[f"s{i + 1}b"] = ConvBnRelu(c, c, 3, 1)
        self.enc = nn.ModuleDict(enc)
        self.dec = nn.ModuleDict({f"lat{i + 1}": nn.Conv2d(chans[i], d, 1) for i in range(4)})
        self.head = nn.ModuleDict(
            {
                "fuse": ConvBnRelu(4 * d, d, 1, 1),
                "conv": ConvBnRelu(d, d, 3, 1),
                "cls": nn.Conv2d(d, classes, 1),
            }
        )
        for i, c in enumerate(chans):
            self.add_module(
                f"proj{i + 1}",
                nn.ModuleDict({"a": ConvBnRelu(c, c, 1, 1), "b": nn.Conv2d(c, proj_dim, 1)}),
            )

    def forward(self, x, projections=True):
        e = self.enc
        s = e["stem2"](e["stem1"](x))
        feats, prev = [], s
        for i in range(4):
            a = prev if i == 0 else e[f"s{i + 1}a"](prev)
            f = a + e[f"s{i + 1}b"](a)
            feats.append(f)
            prev = f
        p = [None] * 4
        p[3] = self.dec["lat4"](feats[3])
        for i in (2, 1, 0):
            p[i] = self.dec[f"lat{i + 1}"](feats[i]) + up(p[i + 1], 2)
        cat = torch.cat([p[0]] + [up(p[i], 1 << i) for i in (1, 2, 3)], dim=1)
        h = self.head["conv"](self.head["fuse"](cat))
        logits = up(self.head["cls"](h), 4)
        if not projections:
            return logits, []
        zs = []
        for i in range(4):
            m = getattr(self, f"proj{i + 1}")
            zs.append(F.normalize(m["b"](m["a"](feats[i])), dim=1))
        return logits, zs


def engine_name(torch_name):
    """The engine's parameter name for a state_dict entry (BN weight/bias are gamma/beta)."""
    parts = torch_name.split(".")
    if len(parts) >= 2 and parts[-2] == "bn":
        parts[-1] = {"weight": "gamma", "bias": "beta"}.get(parts[-1], parts[-1])
    return ".".join(parts)


# --- hash-keyed sampling (train/src/loss/sampling.rs) ---------------------------------------


def splitmix64(x):
    z = (x + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def anchor_key_base(seed, step, scale, cls):
    s = splitmix64(seed ^ ((step * STEP_MULTIPLIER) & M64))
    return splitmix64(s ^ ((scale << 32) | cls))


def signed(u):
    """A u64 as the int64 with the same bits (torch has no uint64 arithmetic)."""
    return u - (1 << 64) if u >= 1 << 63 else u


def lsr(z, n):
    """Logical right shift of int64 bits (>> on int64 is arithmetic)."""
    return (z >> n) & ((1 << (64 - n)) - 1)


def splitmix64_t(x):
    """splitmix64 on int64 tensors; additions and products wrap mod 2^64 as in the engine."""
    z = x + signed(0x9E3779B97F4A7C15)
    z = (z ^ lsr(z, 30)) * signed(0xBF58476D1CE4E5B9)
    z = (z ^ lsr(z, 27)) * signed(0x94D049BB133111EB)
    return z ^ lsr(z, 31)


def capped(cands, base, cap):
    """The `cap` candidates (ascending flat indices) with the smallest u64 keys, ascending."""
    if cands.numel() <= cap:
        return cands
    if cap == 0:
        return cands[:0]
    keys = splitmix64_t(cands ^ signed(base))
    # Flipping the sign bit orders int64 like the u64 keys; stable keeps ties by index.
    order = torch.argsort(keys ^ signed(1 << 63), stable=True)[:cap]
    return cands[order].sort().values


# --- BANE (train/src/loss/bane.rs, edt.rs) --------------------------------------------------


def edt_squared(mask):
    """Exact squared EDT of a [B, H, W] bool mask (scipy's convention: distance to the nearest
    pixel outside the mask within the image; 0 outside it), by brute force along columns then
    rows, O(H·W·(H+W)) per image: exact integers, and all on the GPU."""
    b, h, w = mask.shape
    dev = mask.device
    inf = 1 << 40
    ys = torch.arange(h, device=dev)
    xs = torch.arange(w, device=dev)
    dy = (ys[:, None] - ys[None, :]) ** 2
    dx = (xs[:, None] - xs[None, :]) ** 2
    out = torch.empty(b, h, w, dtype=torch.int64, device=dev)
    for i in range(b):
        f = torch.where(mask[i], inf, 0)
        g = (dy[:, :, None] + f[None, :, :]).amin(dim=1)
        out[i] = (g[:, None, :] + dx[None, :, :]).amin(dim=2)
    return torch.where(mask, out, 0)


def hard_candidates(y, pred, m, k):
    """BANE candidates of anchor class m, [B, h, w] bool: per image, the error pixels whose D² is
    at most the ceil(k·|E|)-th smallest D² in E (all of E when E fills the image)."""
    e = (pred == m) & (y != m) & (y != IGNORE)
    b = e.shape[0]
    size = e.flatten(1).sum(1)
    d2 = edt_squared(e)
    big = 1 << 62
    vals = torch.where(e, d2, big).flatten(1).sort(dim=1).values
    rank = torch.ceil(k * size.double()).long().clamp(min=1)
    rank = torch.minimum(rank, size.clamp(min=1))
    t = vals.gather(1, (rank - 1)[:, None]).view(b, 1, 1)
    return e & (d2 <= t)


def sample_anchor(y, pred, m, cfg, seed, step, scale):
    """Positives, hard and random negatives of class m as ascending flat indices."""
    base = anchor_key_base(seed, step, scale, m)
    flat_y = y.flatten()
    pos = capped(torch.nonzero(flat_y == m).squeeze(1), base, cfg["max_pos"])
    hard_cap = 0
    if cfg["bane"]:
        hard_cap = max(0, min(int(math.floor(cfg["hard_fraction"] * cfg["max_neg"])), cfg["max_neg"]))
    if hard_cap > 0:
        hc = hard_candidates(y, pred, m, cfg["k_percentile"]).flatten()
        hard = capped(torch.nonzero(hc).squeeze(1), base, hard_cap)
    else:
        hard = pos[:0]
    other = (flat_y != m) & (flat_y != IGNORE)
    other[hard] = False
    rand = capped(torch.nonzero(other).squeeze(1), base, max(cfg["max_neg"] - hard.numel(), 0))
    return pos, hard, rand


# --- L_PA (train/src/loss/contrast.rs) ------------------------------------------------------


def contrastive_loss(zs, labels, pred, cfg, seed, step, record=None):
    """L_PA = sum_i lambda_i · mean over anchors of mean_p softplus(LSE_q s_q − s_p), s = â·z/τ,
    with batch anchors fused with the deepest scale's. Autograd gives the gradient through the
    positives, the negatives and the (not detached) anchors."""
    ys, preds, flat, means, counts = [], [], [], [], []
    for i, z in enumerate(zs):
        h, w = z.shape[2:]
        # The scale's stride (4, 8, 16, 32), not full_h // h: that differs for odd sizes
        # (70 rows at stride 16 give 4, and 70 // 4 = 17).
        s = STRIDES[i]
        y = labels[:, : h * s : s, : w * s : s]
        p = pred[:, : h * s : s, : w * s : s]
        zf = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        yf = y.flatten().long()
        keep = yf != IGNORE
        cnt = torch.bincount(yf[keep], minlength=CLASS_IDS)
        sums = torch.zeros(CLASS_IDS, z.shape[1], dtype=z.dtype, device=z.device)
        sums = sums.index_add(0, yf[keep], zf[keep])
        ys.append(y)
        preds.append(p)
        flat.append(zf)
        means.append(sums / cnt.clamp(min=1)[:, None].to(z.dtype))
        counts.append(cnt.tolist())
    total = zs[0].new_zeros(())
    per_scale = []
    for i in range(SCALES):
        losses = []
        for n in range(CLASS_IDS):
            if counts[i][n] == 0:  # 255 is never counted
                continue
            pos, hard, rand = sample_anchor(ys[i], preds[i], n, cfg["sampling"], seed, step, i + 1)
            neg = torch.cat([hard, rand])
            if pos.numel() == 0 or neg.numel() == 0:
                continue
            if record is not None:
                record.append(
                    {"scale": i, "class": n, "positives": pos.tolist(), "hard": hard.tolist(),
                     "random": rand.tolist()}
                )
            anchor = means[i][n]
            if i < SCALES - 1 and counts[SCALES - 1][n] > 0:
                anchor = cfg["w_l"] * anchor + cfg["w_h"] * means[SCALES - 1][n]
            sp = flat[i][pos] @ anchor / cfg["tau"]
            sn = flat[i][neg] @ anchor / cfg["tau"]
            losses.append(F.softplus(torch.logsumexp(sn, 0) - sp, threshold=50).mean())
        li = torch.stack(losses).mean() if losses else zs[0].new_zeros(())
        per_scale.append(li)
        total = total + cfg["lambda"][i] * li
    return total, per_scale


# --- the two checks --------------------------------------------------------------------------


def read_case(case):
    return json.loads((case / "case.json").read_text())


def sampling_cfg(c):
    return {k: c[k] for k in ("max_pos", "max_neg", "hard_fraction", "k_percentile", "bane")}


def loss_cfg(c):
    return {"tau": c["tau"], "lambda": c["lambda"], "w_l": c["w_l"], "w_h": c["w_h"],
            "sampling": sampling_cfg(c)}


def check_loss(case):
    """f64 L_PA, per-scale losses, samples and dL/dz on the case's inputs."""
    c = read_case(case)
    zs = [torch.from_numpy(np.load(case / f"z{i + 1}.npy")).double().requires_grad_(True)
          for i in range(SCALES)]
    labels = torch.from_numpy(np.load(case / "labels.npy")).round().to(torch.int64)
    pred = torch.from_numpy(np.load(case / "pred.npy")).round().to(torch.int64)
    record = []
    loss, per_scale = contrastive_loss(zs, labels, pred, loss_cfg(c), c["seed"], c["step"], record)
    grads = torch.autograd.grad(loss, zs, allow_unused=True)
    for i, (z, g) in enumerate(zip(zs, grads)):
        g = torch.zeros_like(z) if g is None else g
        np.save(case / f"grad{i + 1}.npy", np.ascontiguousarray(g.numpy(), dtype=np.float32))
    out = {"loss": loss.item(), "per_scale": [float(v) for v in per_scale], "anchors": record,
           "torch": torch.__version__}
    (case / "result.json").write_text(json.dumps(out))


def check_step(case):
    """One SGD step (CE + alpha·L_PA when case.json says so) from the engine's parameters: the
    losses before the step, and every parameter and BN running statistic after it."""
    c = read_case(case)
    net = ContextrastNet(c["classes"], c["width"], c["decoder"], c["proj_dim"]).double()
    state = net.state_dict()
    with torch.no_grad():
        for name, t in state.items():
            if name.endswith("num_batches_tracked"):
                continue
            v = np.load(case / "params" / f"{engine_name(name)}.npy")
            t.copy_(torch.from_numpy(v).reshape(t.shape))
    x = torch.from_numpy(np.load(case / "x.npy")).double()
    labels = torch.from_numpy(np.load(case / "labels.npy")).round().to(torch.int64)
    net.train()
    logits, zs = net(x, projections=c["contrast"])
    ce = F.cross_entropy(logits, labels, ignore_index=IGNORE)
    loss = ce
    l_pa = None
    if c["contrast"]:
        pred = logits.argmax(1).detach()
        l_pa, _ = contrastive_loss(zs, labels, pred, loss_cfg(c), c["seed"], c["step"])
        loss = ce + c["alpha"] * l_pa
    opt = torch.optim.SGD(net.parameters(), lr=c["lr"], momentum=c["momentum"],
                          weight_decay=c["weight_decay"])
    opt.zero_grad()
    loss.backward()
    opt.step()
    out_dir = case / "after"
    out_dir.mkdir(exist_ok=True)
    for name, t in net.state_dict().items():
        if not name.endswith("num_batches_tracked"):
            np.save(out_dir / f"{engine_name(name)}.npy",
                    np.ascontiguousarray(t.detach().numpy(), dtype=np.float32).ravel())
    res = {"ce": ce.item(), "l_pa": None if l_pa is None else l_pa.item(), "torch": torch.__version__}
    (case / "result.json").write_text(json.dumps(res))


# --- the benchmark ---------------------------------------------------------------------------


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def mib(v):
    return v / (1 << 20)


def median(v):
    return sorted(v)[len(v) // 2]


def bench(args):
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit("torch_peer.py: --device cuda, but torch sees no GPU")
    # f32 throughout, as the engine: no TF32 unless asked for.
    torch.backends.cudnn.allow_tf32 = args.tf32
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.benchmark = True
    classes = 5
    contrast = args.loss in ("ccl", "contextrast")
    cfg = loss_cfg({"tau": 0.1, "lambda": [0.1, 0.4, 0.7, 1.0], "w_l": 0.5, "w_h": 0.5,
                    "max_pos": 1024, "max_neg": 2048, "hard_fraction": 0.5,
                    "k_percentile": 0.5, "bane": args.loss == "contextrast"})
    alpha = 0.1
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    torch.manual_seed(0)
    net = ContextrastNet(classes).to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    b, s = args.batch, args.size
    x = torch.randn(b, 3, s, s, device=dev)
    # The engine's bench labels: stripes of 37 pixels cycling through the classes.
    y = ((torch.arange(b * s * s, device=dev) // 37) % classes).view(b, s, s)
    times = []
    for i in range(args.steps + 2):
        sync(dev)
        t = time.perf_counter()
        logits, zs = net(x, projections=contrast)
        loss = F.cross_entropy(logits, y, ignore_index=IGNORE)
        if contrast:
            pred = logits.argmax(1).detach()
            l_pa, _ = contrastive_loss(zs, y, pred, cfg, 1, i)
            loss = loss + alpha * l_pa
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
        sync(dev)
        if i >= 2:
            times.append((time.perf_counter() - t) * 1e3)
    report = {
        "peer": "pytorch",
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "loss": args.loss,
        "batch": b,
        "size": s,
        "steps": args.steps,
        "tf32": args.tf32,
        "params": sum(p.numel() for p in net.parameters()),
        "step_ms_median": median(times),
        "step_ms_min": min(times),
        "images_per_s": b / (median(times) / 1e3),
    }
    if dev.type == "cuda":
        report["gpu_peak_allocated_mib"] = mib(torch.cuda.max_memory_allocated(dev))
        report["gpu_peak_reserved_mib"] = mib(torch.cuda.max_memory_reserved(dev))
        free, total = torch.cuda.mem_get_info(dev)
        report["gpu_device_used_mib"] = mib(total - free)
    else:
        report["peak_resident_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if contrast:
        # The loss alone: L_PA forward and its gradient w.r.t. the four projections.
        logits, zs = net(x, projections=True)
        pred = logits.argmax(1).detach()
        zs = [z.detach().requires_grad_(True) for z in zs]
        if dev.type == "cuda":
            sync(dev)
            torch.cuda.reset_peak_memory_stats(dev)
        lt = []
        for i in range(args.steps + 2):
            sync(dev)
            t = time.perf_counter()
            l_pa, _ = contrastive_loss(zs, y, pred, cfg, 1, i)
            torch.autograd.grad(l_pa, zs, allow_unused=True)
            sync(dev)
            if i >= 2:
                lt.append((time.perf_counter() - t) * 1e3)
        report["loss_ms_median"] = median(lt)
        report["loss_ms_min"] = min(lt)
        report["loss_share_of_step"] = median(lt) / median(times)
        if dev.type == "cuda":
            report["gpu_loss_peak_allocated_mib"] = mib(torch.cuda.max_memory_allocated(dev))
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        pathlib.Path(args.json).write_text(text + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("loss", "step"):
        p = sub.add_parser(name)
        p.add_argument("case", type=pathlib.Path)
    p = sub.add_parser("bench")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--loss", choices=("ce", "ccl", "contextrast"), default="contextrast")
    p.add_argument("--tf32", action="store_true", help="allow TF32 (the engine computes in f32)")
    p.add_argument("--json")
    args = ap.parse_args()
    torch.set_grad_enabled(True)
    if args.cmd == "loss":
        check_loss(args.case)
    elif args.cmd == "step":
        check_step(args.case)
    else:
        if args.size % 32 or args.batch < 1 or args.steps < 1:
            sys.exit("torch_peer.py: need --size a multiple of 32, --batch >= 1, --steps >= 1")
        bench(args)


if __name__ == "__main__":
    main()
