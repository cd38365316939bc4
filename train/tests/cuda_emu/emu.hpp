// A small CUDA emulator for host C++: enough of the CUDA C dialect (thread and block indices,
// __shared__, __syncthreads, the warp shuffle and ballot, atomicAdd) to run kernels/*.cu on the
// CPU. One block at a time, on one OS thread: in a block whose kernel synchronises
// ("cooperative") every CUDA thread is a fiber (ucontext) that runs until it reaches a barrier
// (__syncthreads, or a warp intrinsic for its warp), and a barrier opens once every thread of the
// block (of the warp) that has not exited waits at it; a barrier that can never open (divergent
// synchronisation) aborts. Other blocks run their threads one after another. Blocks, threads
// and fibers run in ascending or (EMU_DESCENDING=1) descending order.
// Shared memory is `static` (one copy per kernel, reused block after block: like the device,
// nothing carries over between blocks that the kernel does not initialise itself).
// For tests/cuda_contrast_emulated.rs and the emulated CUDA driver (driver.cpp): it checks logic,
// not performance or memory models.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <math.h>
#include <memory>
#include <ucontext.h>
#include <vector>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif

// Internal linkage for all of it: each kernel file is its own translation unit with its own
// emulator state, and an `inline` function shared between them would read another's state.
namespace {

struct EmuDim3 {
    unsigned x = 1, y = 1, z = 1;
};
static EmuDim3 threadIdx, blockIdx, blockDim, gridDim;
static bool emu_cooperative = false;
static unsigned long long emu_warp_slot[32][32];

enum EmuState { EMU_RUNNABLE, EMU_AT_BLOCK, EMU_AT_WARP, EMU_DONE };
struct EmuFiber {
    ucontext_t ctx;
    std::vector<char> stack;
    EmuState state;
    void* asan_save = nullptr;
};
static ucontext_t emu_scheduler;

// Under AddressSanitizer (scripts/cuda-emu builds with it) every switch between the scheduler's
// stack and a fiber's is announced, so the sanitizer tracks which stack is live.
static const void* emu_scheduler_stack = nullptr;
static size_t emu_scheduler_stack_size = 0;
#if defined(__SANITIZE_ADDRESS__)
// Leaving for `to` (its stack); `save` keeps the leaving side's state (null: it never returns).
inline void emu_switch_out(void** save, const void* to, size_t size) {
    __sanitizer_start_switch_fiber(save, to, size);
}
// Arrived; `save` is what this side saved when it left (null: first arrival).
inline void emu_switch_in(void* save, const void** from, size_t* size) {
    __sanitizer_finish_switch_fiber(save, from, size);
}
#else
inline void emu_switch_out(void**, const void*, size_t) {}
inline void emu_switch_in(void*, const void**, size_t*) {}
#endif
static std::vector<EmuFiber> emu_fibers;
static unsigned emu_current = 0;
static std::function<void()> emu_job;
// Order in which runnable fibers resume: ascending thread index, or descending when set (so a
// missing barrier shows whichever side of it thread 0 is on).
static bool emu_descending = false;
// The kernel being run, for the emulator's messages (set by launch.hpp; empty otherwise).
static const char* emu_kernel = "";

#define __global__
// static: each kernel file is its own translation unit over its own emulator state (driver.cpp).
#define __device__ static
#define __forceinline__ inline
#define __shared__ static

static void emu_fail(const char* what) {
    fprintf(stderr, "emulator: %s%s%s\n", emu_kernel, *emu_kernel ? ": " : "", what);
    std::abort();
}

// A fiber hands the OS thread back to the scheduler; `exited`: it never resumes.
inline void emu_to_scheduler(EmuFiber& f, bool exited) {
    emu_switch_out(exited ? nullptr : &f.asan_save, emu_scheduler_stack, emu_scheduler_stack_size);
    swapcontext(&f.ctx, &emu_scheduler);
    emu_switch_in(f.asan_save, nullptr, nullptr);
}

// Waits at a barrier: back to the scheduler until it opens.
inline void emu_wait(EmuState at) {
    if (!emu_cooperative) emu_fail("barrier in a kernel launched as not cooperative");
    EmuFiber& f = emu_fibers[emu_current];
    f.state = at;
    emu_to_scheduler(f, false);
}
inline void __syncthreads() { emu_wait(EMU_AT_BLOCK); }
inline void emu_warp_sync() { emu_wait(EMU_AT_WARP); }

template <class T>
T __shfl_down_sync(unsigned mask, T v, int offset) {
    static_assert(sizeof(T) <= 8, "shuffle of at most 64 bits");
    if (mask != 0xffffffffu) emu_fail("only full-warp shuffles are emulated");
    unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    unsigned long long raw = 0;
    std::memcpy(&raw, &v, sizeof(T));
    emu_warp_slot[warp][lane] = raw;
    emu_warp_sync();
    T out = v;  // lanes past the warp's end keep their own value, as on the device
    if (lane + offset < 32) std::memcpy(&out, &emu_warp_slot[warp][lane + offset], sizeof(T));
    emu_warp_sync();
    return out;
}

inline unsigned __ballot_sync(unsigned mask, int flag) {
    if (mask != 0xffffffffu) emu_fail("only full-warp ballots are emulated");
    unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    emu_warp_slot[warp][lane] = flag ? 1 : 0;
    emu_warp_sync();
    unsigned out = 0;
    for (unsigned l = 0; l < 32; ++l)
        if (emu_warp_slot[warp][l]) out |= 1u << l;
    emu_warp_sync();
    return out;
}

// Atomic as it is: fibers switch only at barriers.
template <class T>
T atomicAdd(T* p, T v) {
    T old = *p;
    *p = old + v;
    return old;
}

inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline double __longlong_as_double(long long x) {
    double d;
    std::memcpy(&d, &x, sizeof d);
    return d;
}

static void emu_fiber_main() {
    emu_switch_in(nullptr, &emu_scheduler_stack, &emu_scheduler_stack_size);
    emu_job();
    EmuFiber& f = emu_fibers[emu_current];
    f.state = EMU_DONE;
    // Back to the scheduler for good (rather than through uc_link, which AddressSanitizer's
    // fiber support does not follow).
    emu_to_scheduler(f, true);
}

// Runs one cooperative block of blockDim.x fibers until all have exited.
static void emu_run_block() {
    unsigned n = blockDim.x;
    const size_t stack = 256 * 1024;
    if (emu_fibers.size() < n) emu_fibers.resize(n);
    for (unsigned t = 0; t < n; ++t) {
        EmuFiber& f = emu_fibers[t];
        if (f.stack.size() < stack) f.stack.resize(stack);
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = f.stack.data();
        f.ctx.uc_stack.ss_size = f.stack.size();
        f.ctx.uc_link = &emu_scheduler;
        makecontext(&f.ctx, emu_fiber_main, 0);
        f.state = EMU_RUNNABLE;
    }
    for (;;) {
        for (unsigned i = 0; i < n; ++i) {
            unsigned t = emu_descending ? n - 1 - i : i;
            if (emu_fibers[t].state == EMU_RUNNABLE) {
                emu_current = t;
                threadIdx = {t, 0, 0};
                EmuFiber& f = emu_fibers[t];
                void* save = nullptr;
                emu_switch_out(&save, f.stack.data(), f.stack.size());
                swapcontext(&emu_scheduler, &f.ctx);
                emu_switch_in(save, nullptr, nullptr);
            }
        }
        // Everyone waits or has exited: open what can open.
        bool released = false, all_done = true, all_at_block = true;
        for (unsigned w = 0; w * 32 < n; ++w) {
            bool any = false, all_warp = true;
            for (unsigned t = w * 32; t < n && t < w * 32 + 32; ++t) {
                EmuState st = emu_fibers[t].state;
                if (st == EMU_DONE) continue;
                any = true;
                all_done = false;
                if (st != EMU_AT_WARP) all_warp = false;
                if (st != EMU_AT_BLOCK) all_at_block = false;
            }
            if (any && all_warp) {
                for (unsigned t = w * 32; t < n && t < w * 32 + 32; ++t)
                    if (emu_fibers[t].state == EMU_AT_WARP) emu_fibers[t].state = EMU_RUNNABLE;
                released = true;
            }
        }
        if (all_done) return;
        if (!released && all_at_block) {
            for (unsigned t = 0; t < n; ++t)
                if (emu_fibers[t].state == EMU_AT_BLOCK) emu_fibers[t].state = EMU_RUNNABLE;
            released = true;
        }
        if (!released) emu_fail("deadlock: threads wait at barriers that cannot open");
    }
}

// Runs `kernel` on grid × block. Cooperative launches need blockDim.x a multiple of 32 (all of
// this project's kernels that synchronise say so), as the warp intrinsics assume full warps.
template <class F>
void emu_launch(EmuDim3 grid, EmuDim3 block, bool cooperative, F kernel) {
    if (grid.x == 0 || grid.y == 0 || grid.z == 0 || block.x == 0)
        emu_fail("launch with an empty grid or block (invalid on the device)");
    if (block.x > 1024 || grid.y > 65535 || grid.z > 65535) emu_fail("launch dimensions out of range");
    if (cooperative && block.x % 32 != 0) emu_fail("cooperative block not a multiple of 32");
    gridDim = grid;
    blockDim = block;
    emu_cooperative = cooperative;
    if (cooperative) emu_job = kernel;
    // Blocks too run last to first when descending: a kernel whose blocks depend on each
    // other's order (which the device never promises) gives different results in the two runs.
    auto order = [](unsigned i, unsigned n) { return emu_descending ? n - 1 - i : i; };
    for (unsigned iz = 0; iz < grid.z; ++iz)
        for (unsigned iy = 0; iy < grid.y; ++iy)
            for (unsigned ix = 0; ix < grid.x; ++ix) {
                blockIdx = {order(ix, grid.x), order(iy, grid.y), order(iz, grid.z)};
                if (cooperative) {
                    emu_run_block();
                    continue;
                }
                for (unsigned i = 0; i < block.x; ++i) {
                    unsigned t = emu_descending ? block.x - 1 - i : i;
                    threadIdx = {t, 0, 0};
                    kernel();
                }
            }
}

}  // namespace
