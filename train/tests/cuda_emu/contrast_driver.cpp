// The host side of Cuda::contrastive_loss_device (src/backend/cuda/contrast.rs), written again
// in C++ over the emulator (emu.hpp), launching the kernels of kernels/contrast.cu with the same
// grids, blocks, buffer sizes and arguments. Reads one case on stdin, writes the loss, the
// samples of every class (the anchor slots: the model's K classes at every scale) and the
// gradients (tests/cuda_contrast_emulated.rs).
// Keep in step with contrast.rs: every launch below names the Rust function it mirrors.
#include <algorithm>
#include <iostream>
#include <cstdio>
#include <cstdlib>

template <class T>
static std::vector<T> alloc_t(size_t len) {  // Cuda::alloc_t: zeroed, never empty
    return std::vector<T>(std::max<size_t>(len, 1), T(0));
}
static const unsigned BLOCK = 256, ANCHOR_BLOCK = 512;
static EmuDim3 grid_of(size_t n, size_t y) {  // elems_cfg / grid2
    size_t b = std::min<size_t>(std::max<size_t>((n + BLOCK - 1) / BLOCK, 1), 1u << 16);
    return {(unsigned)b, (unsigned)std::max<size_t>(y, 1), 1};
}
static EmuDim3 blocks(size_t x, size_t y) {
    return {(unsigned)std::max<size_t>(x, 1), (unsigned)std::max<size_t>(y, 1), 1};
}
#define LAUNCH(grid, threads, coop, call) emu_launch(grid, EmuDim3{threads, 1, 1}, coop, [&] { call; })

template <class T>
static T rd() {
    T v;
    if (!(std::cin >> v)) emu_fail("short input");
    return v;
}

int main() {
    std::ios::sync_with_stdio(false);
    const char* order = std::getenv("EMU_DESCENDING");
    emu_descending = order && order[0] == '1';
    const int S = 4, CLASSES = 256;
    int B = rd<int>(), D = rd<int>(), H = rd<int>(), W = rd<int>(), K = rd<int>();
    int stride[S];
    for (int& s : stride) s = rd<int>();
    double tau = rd<double>(), lambda[S];
    for (double& l : lambda) l = rd<double>();
    double w_l = rd<double>(), w_h = rd<double>();
    size_t max_pos = rd<size_t>(), max_neg = rd<size_t>(), hard_cap_cfg = rd<size_t>();
    double k_percentile = rd<double>();
    size_t full = (size_t)B * H * W;
    std::vector<unsigned char> labels(full), pred(full);
    for (auto& v : labels) v = (unsigned char)rd<int>();
    for (auto& v : pred) v = (unsigned char)rd<int>();
    int hs[S], ws[S];
    size_t pix[S], numel[S];
    std::vector<std::vector<float>> z(S);
    for (int i = 0; i < S; ++i) {
        hs[i] = H / stride[i];
        ws[i] = W / stride[i];
        pix[i] = (size_t)B * hs[i] * ws[i];
        numel[i] = pix[i] * D;
        z[i].resize(std::max<size_t>(numel[i], 1));
        for (size_t j = 0; j < numel[i]; ++j) {
            unsigned bits = rd<unsigned>();
            std::memcpy(&z[i][j], &bits, 4);
        }
    }
    std::vector<unsigned long long> all_bases(S * CLASSES);
    for (auto& b : all_bases) b = rd<unsigned long long>();

    std::vector<int> slots(K);  // slots_dev: the classes 0..K-1
    for (int c = 0; c < K; ++c) slots[c] = c;

    // Phase 1: contrast_downsample, contrast_class_stats.
    std::vector<std::vector<unsigned char>> ys(S), preds(S);
    std::vector<std::vector<int>> counts(S);
    std::vector<std::vector<double>> sums(S);
    for (int i = 0; i < S; ++i) {
        size_t n = pix[i];
        ys[i] = alloc_t<unsigned char>(n);
        preds[i] = alloc_t<unsigned char>(n);
        if (n > 0) {
            LAUNCH(grid_of(n, 1), BLOCK, false,
                   ctr_downsample(labels.data(), ys[i].data(), B, H, W, stride[i], hs[i], ws[i]));
            LAUNCH(grid_of(n, 1), BLOCK, false,
                   ctr_downsample(pred.data(), preds[i].data(), B, H, W, stride[i], hs[i], ws[i]));
        }
        counts[i] = alloc_t<int>(CLASSES);
        sums[i] = alloc_t<double>((size_t)CLASSES * D);
        if (n > 0) {
            size_t chunks = std::min<size_t>(std::max<size_t>((n + BLOCK * 16 - 1) / (BLOCK * 16), 1), 1024);
            int hw = hs[i] * ws[i];
            LAUNCH(blocks(chunks, std::max(D, 1)), BLOCK, true,
                   ctr_class_stats(z[i].data(), ys[i].data(), B, D, hw, counts[i].data(), sums[i].data()));
        }
    }

    // Phase 2: sample_device (edt_device, ctr_bane_candidates, ctr_sample) and anchor_vectors,
    // for every class slot.
    struct Samples {
        std::vector<int> classes, counts;
        std::vector<unsigned> pos_idx, neg_idx;
        size_t pos_cap, neg_cap;
    };
    std::vector<Samples> samples(S);
    std::vector<std::vector<double>> anchor_vecs(S);
    for (int i = 0; i < S; ++i) {
        Samples& sm = samples[i];
        size_t n = pix[i], a = K;
        int h = hs[i], w = ws[i];
        sm.classes = slots;
        std::vector<int>& classes_dev = slots;
        sm.pos_cap = std::min(max_pos, n);
        sm.neg_cap = std::min(max_neg, n);
        size_t hard_cap = std::min(hard_cap_cfg, n);
        sm.pos_idx = alloc_t<unsigned>(a * sm.pos_cap);
        sm.neg_idx = alloc_t<unsigned>(a * sm.neg_cap);
        sm.counts = alloc_t<int>(a * 3);
        if (a > 0 && n > 0) {
            auto flags = alloc_t<unsigned char>(a * n);
            if (hard_cap > 0) {
                auto g = alloc_t<long long>(a * n);
                auto scratch = alloc_t<long long>(a * n * 3);
                auto d2 = alloc_t<unsigned>(a * n);
                LAUNCH(grid_of((size_t)B * w, a), BLOCK, false,
                       ctr_edt_cols(ys[i].data(), preds[i].data(), classes_dev.data(), B, h, w,
                                    g.data(), scratch.data()));
                LAUNCH(grid_of((size_t)B * h, a), BLOCK, false,
                       ctr_edt_rows(g.data(), B, h, w, d2.data(), scratch.data()));
                LAUNCH(blocks(B, a), BLOCK, true,
                       ctr_bane_candidates(ys[i].data(), preds[i].data(), classes_dev.data(), d2.data(),
                                           B, h * w, k_percentile, flags.data()));
            }
            std::vector<unsigned long long> bases;
            for (int c : slots) bases.push_back(all_bases[i * CLASSES + c]);
            LAUNCH(blocks(a, 1), ANCHOR_BLOCK, true,
                   ctr_sample(ys[i].data(), flags.data(), classes_dev.data(), bases.data(), (long long)n,
                              (long long)sm.pos_cap, (long long)hard_cap, (long long)sm.neg_cap,
                              sm.pos_idx.data(), sm.neg_idx.data(), sm.counts.data()));
        }
        anchor_vecs[i] = alloc_t<double>(a * D);
        if (a > 0 && D > 0) {
            int fuse = i < S - 1;
            LAUNCH(grid_of(a * D, 1), BLOCK, false,
                   ctr_anchor_vectors(sums[i].data(), counts[i].data(), sums[S - 1].data(),
                                      counts[S - 1].data(), classes_dev.data(), (int)a, D, fuse, w_l,
                                      w_h, anchor_vecs[i].data()));
        }
    }
    // Phase 3: per-anchor losses, gradients into the samples and into the anchors, for every
    // slot (the kernels skip unused anchors and weigh by the used ones they count).
    std::vector<std::vector<double>> grads64(S);
    for (int i = 0; i < S; ++i) grads64[i] = alloc_t<double>(numel[i]);
    size_t per = (size_t)CLASSES * D;
    auto dhat = alloc_t<double>(S * per);
    std::vector<std::vector<double>> losses(S);
    for (int i = 0; i < S; ++i) {
        Samples& sm = samples[i];
        size_t a = sm.classes.size();
        losses[i] = alloc_t<double>(a);
        int hw = hs[i] * ws[i];
        long long pc = sm.pos_cap, nc = sm.neg_cap;
        auto pos_v = alloc_t<double>(a * sm.pos_cap), neg_v = alloc_t<double>(a * sm.neg_cap);
        double* av = anchor_vecs[i].data();
        std::vector<int>& classes_dev = slots;
        LAUNCH(grid_of(sm.pos_cap + sm.neg_cap, a), BLOCK, false,
               ctr_dots(z[i].data(), av, sm.counts.data(), sm.pos_idx.data(), sm.neg_idx.data(), pc, nc, D,
                        hw, pos_v.data(), neg_v.data()));
        auto pos_c = alloc_t<double>(a * sm.pos_cap), neg_c = alloc_t<double>(a * sm.neg_cap);
        LAUNCH(blocks(a, 1), ANCHOR_BLOCK, true,
               ctr_anchor_loss(sm.counts.data(), pos_v.data(), neg_v.data(), pc, nc, tau, lambda[i],
                               (int)a, losses[i].data(), pos_c.data(), neg_c.data()));
        size_t entries = (sm.pos_cap + sm.neg_cap) * D;
        LAUNCH(grid_of(entries, a), BLOCK, false,
               ctr_scatter_samples(grads64[i].data(), av, sm.counts.data(), sm.pos_idx.data(),
                                   sm.neg_idx.data(), pos_c.data(), neg_c.data(), pc, nc, D, hw));
        if (D > 0)
            LAUNCH(blocks(D, a), ANCHOR_BLOCK, true,
                   ctr_anchor_dhat(z[i].data(), classes_dev.data(), sm.counts.data(), sm.pos_idx.data(),
                                   sm.neg_idx.data(), pos_c.data(), neg_c.data(), pc, nc, D, hw,
                                   dhat.data() + i * per));
    }

    // Phase 4: through the fusion and the means, then to f32.
    auto d_anchor = alloc_t<double>(S * per);
    if (D > 0)
        LAUNCH(grid_of(per, 1), BLOCK, false,
               ctr_anchor_grad(dhat.data(), counts[S - 1].data(), D, w_l, w_h, d_anchor.data()));
    std::vector<std::vector<float>> grads(S);
    for (int i = 0; i < S; ++i) {
        size_t n = numel[i];
        grads[i] = alloc_t<float>(n);
        if (n == 0) continue;
        int hw = hs[i] * ws[i];
        LAUNCH(grid_of(n, 1), BLOCK, false,
                   ctr_means_backward(ys[i].data(), counts[i].data(), d_anchor.data() + i * per, B, D, hw,
                                      grads64[i].data()));
        LAUNCH(grid_of(n, 1), BLOCK, false, ctr_to_f32(grads64[i].data(), grads[i].data(), (long long)n));
    }

    // QueuedReport::read: the used anchors, then each one's loss over their count.
    int anchors_used[S] = {0, 0, 0, 0};
    double per_scale[S] = {0, 0, 0, 0};
    auto used = [&](int i, size_t a) {
        return samples[i].counts[a * 3] > 0 && samples[i].counts[a * 3 + 1] + samples[i].counts[a * 3 + 2] > 0;
    };
    for (int i = 0; i < S; ++i) {
        for (size_t a = 0; a < samples[i].classes.size(); ++a) anchors_used[i] += used(i, a);
        for (size_t a = 0; a < samples[i].classes.size(); ++a)
            if (used(i, a)) per_scale[i] += losses[i][a] / anchors_used[i];
    }
    double loss = 0;
    for (int i = 0; i < S; ++i) loss += per_scale[i] * lambda[i];

    printf("%.17g", loss);
    for (double v : per_scale) printf(" %.17g", v);
    printf("\n");
    for (int v : anchors_used) printf("%d ", v);
    printf("\n");
    for (int i = 0; i < S; ++i) {
        const Samples& sm = samples[i];
        printf("%zu\n", sm.classes.size());
        for (size_t a = 0; a < sm.classes.size(); ++a) {
            int np = sm.counts[a * 3], nh = sm.counts[a * 3 + 1], nr = sm.counts[a * 3 + 2];
            printf("%d %d %d %d\n", sm.classes[a], np, nh, nr);
            for (int j = 0; j < np; ++j) printf("%u ", sm.pos_idx[a * sm.pos_cap + j]);
            printf("\n");
            for (int j = 0; j < nh + nr; ++j) printf("%u ", sm.neg_idx[a * sm.neg_cap + j]);
            printf("\n");
        }
    }
    for (int i = 0; i < S; ++i) {
        printf("%zu\n", numel[i]);
        for (size_t j = 0; j < numel[i]; ++j) {
            unsigned bits;
            std::memcpy(&bits, &grads[i][j], 4);
            printf("%u ", bits);
        }
        printf("\n");
    }
    return 0;
}
