// How the emulated driver (driver.cpp) launches a kernel of kernels/*.cu: each kernel file is
// built as its own translation unit (emu.hpp, common.cuh, the file, then the EMU_KERNEL lines
// scripts/cuda-emu generates from its `extern "C" __global__` signatures), and registers, by
// name, a launcher that reads the kernel's arguments out of cuLaunchKernel's parameter array the
// way the device does: parameter i is sizeof(its type) bytes at kernelParams[i].
#include "abi.hpp"

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <type_traits>
#include <utility>

namespace {

[[noreturn]] void emu_bad_pointer(const char* kernel, std::size_t index, const void* p) {
    fprintf(stderr, "emulated driver: %s: argument %zu (%p) points into no device allocation\n",
            kernel, index, p);
    std::abort();
}

// Every pointer argument must point into device memory, as on a GPU (where a host pointer or a
// freed buffer faults); null is allowed (the kernels take it for "absent").
template <class A>
void emu_check_argument(const char* kernel, std::size_t index, const A& a) {
    if constexpr (std::is_pointer_v<A>) {
        if (a != nullptr && !emu_device_pointer_ok(static_cast<const void*>(a)))
            emu_bad_pointer(kernel, index, a);
    }
}

template <class... A, std::size_t... I>
void emu_call(const char* name, void (*kernel)(A...), void** p, std::index_sequence<I...>) {
    (emu_check_argument(name, I, *static_cast<std::remove_cv_t<A>*>(p[I])), ...);
    kernel(*static_cast<std::remove_cv_t<A>*>(p[I])...);
}

template <class... A>
void emu_run(const char* name, void (*kernel)(A...), const EmuGrid* g, void** p, bool cooperative) {
    emu_kernel = name;
    // EMU_DESCENDING=1: fibers resume in descending thread order (a missing barrier shows
    // whichever side of it thread 0 is on).
    static const bool descending = [] {
        const char* v = std::getenv("EMU_DESCENDING");
        return v != nullptr && *v == '1';
    }();
    emu_descending = descending;
    emu_launch(EmuDim3{g->gx, g->gy, g->gz}, EmuDim3{g->bx, 1, 1}, cooperative,
               [&] { emu_call(name, kernel, p, std::index_sequence_for<A...>{}); });
    emu_kernel = "";
}

struct EmuRegistration {
    EmuRegistration(const char* name, EmuLauncher launch, bool cooperative) {
        emu_register_kernel(name, launch, cooperative ? 1 : 0);
    }
};

}  // namespace

// One kernel: its launcher and its registration at load time. `cooperative`: the kernel
// synchronises (shared memory, barriers, warp intrinsics), so its threads run as fibers.
#define EMU_KERNEL(name, cooperative)                                        \
    static void emu_launch_##name(const EmuGrid* g, void** p) {              \
        emu_run(#name, name, g, p, cooperative);                             \
    }                                                                        \
    static EmuRegistration emu_registration_##name(#name, emu_launch_##name, cooperative);
