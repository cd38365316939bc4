// An emulated CUDA driver (libcuda.so.1) for machines without a GPU: the part of the driver API
// that cudarc calls for this project's CUDA backend, over host memory, with our kernels built for
// the CPU (emu.hpp, launch.hpp) in place of the PTX it is handed. scripts/cuda-emu builds it and
// runs the CUDA test suites through it, so the backend's own Rust code (its launches, grids,
// argument lists, buffer sizes, copies, the memory-pool calls) runs in CI, not only on GPU hosts.
//
// It is strict where a GPU is: an unknown kernel name, PTX for a newer architecture or a newer PTX
// ISA than the emulated device and driver take, a zero-byte allocation, a copy or a gemm that
// runs past its buffer, a kernel pointer argument outside device memory, a launch beyond the
// device's limits, and memory or launch calls with no current context are errors. Work is
// synchronous (every stream is the host thread), so it checks logic, not timing or memory models.
//
// Environment: CUDA_EMU_DEVICES (0 = the driver loads but finds no device; default 1),
// CUDA_EMU_CC (compute capability, default 87: Jetson Orin), CUDA_EMU_DRIVER (the CUDA version
// it reports and whose PTX it loads: 12060 by default, JetPack 6; 13000 for the GPU hosts'),
// CUDA_EMU_MEMORY_MIB (default 8192),
// CUDA_EMU_TRACE=1 (one stderr line per launch).
#include "abi.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;

enum : CUresult {
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    CUDA_ERROR_NOT_INITIALIZED = 3,
    CUDA_ERROR_NO_DEVICE = 100,
    CUDA_ERROR_INVALID_DEVICE = 101,
    CUDA_ERROR_INVALID_IMAGE = 200,
    CUDA_ERROR_INVALID_CONTEXT = 201,
    CUDA_ERROR_NO_BINARY_FOR_GPU = 209,
    CUDA_ERROR_UNSUPPORTED_PTX_VERSION = 222,
    CUDA_ERROR_INVALID_HANDLE = 400,
    CUDA_ERROR_NOT_FOUND = 500,
    CUDA_ERROR_NOT_SUPPORTED = 801,
};

namespace {

struct Context {
    int refs = 0;
};
struct Module {
    std::vector<std::string> entries;
};
struct Kernel {
    EmuLauncher launch;
    bool cooperative;
};
struct Event {
    std::chrono::steady_clock::time_point at;
};
struct Pool {
    unsigned long long release_threshold = 0, used = 0, used_high = 0, reserved = 0, reserved_high = 0;
};

std::recursive_mutex big_lock;  // one "device": every call, and every kernel, runs alone
bool initialised = false;
Context primary;
Pool pool;
thread_local Context* current = nullptr;
std::map<std::uintptr_t, std::size_t> live;  // device allocations: base → bytes
std::map<std::string, Kernel>& kernels() {
    static std::map<std::string, Kernel> table;  // filled by static initialisers at load time
    return table;
}
int stream_tag;  // its address is every stream handle: work runs at once

unsigned long long env_u64(const char* name, unsigned long long fallback) {
    const char* v = std::getenv(name);
    return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}
int device_count() { return (int)env_u64("CUDA_EMU_DEVICES", 1); }
int compute_capability() { return (int)env_u64("CUDA_EMU_CC", 87); }
// CUDA 12.6 (JetPack 6) by default; CUDA_EMU_DRIVER=13000 is a CUDA 13.0 driver, as on the
// GPU hosts lent to this project, for runs with CUDA 13's NVRTC (whose PTX a 12.6 driver refuses).
int driver_version() { return (int)env_u64("CUDA_EMU_DRIVER", 12060); }
// The newest PTX ISA the driver loads: 8.5 for 12.6, 9.0 for 13.0.
int max_ptx_isa() { return driver_version() >= 13000 ? 90 : 85; }
unsigned long long total_memory() { return env_u64("CUDA_EMU_MEMORY_MIB", 8192) << 20; }
const unsigned long long CONTEXT_BYTES = 64ull << 20;  // what the context itself holds

bool trace() {
    static bool on = env_u64("CUDA_EMU_TRACE", 0) != 0;
    return on;
}

// Whether [p, p + bytes) lies inside one live allocation.
bool range_ok(std::uintptr_t p, std::size_t bytes) {
    auto it = live.upper_bound(p);
    if (it == live.begin()) return false;
    --it;
    return p >= it->first && p - it->first <= it->second && bytes <= it->second - (p - it->first);
}

CUresult need_context() {
    if (!initialised) return CUDA_ERROR_NOT_INITIALIZED;
    return current ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT;
}

CUresult allocate(CUdeviceptr* dptr, std::size_t bytes) {
    if (CUresult r = need_context()) return r;
    if (!dptr || bytes == 0) return CUDA_ERROR_INVALID_VALUE;  // as the driver: no empty buffers
    if (pool.reserved + bytes + CONTEXT_BYTES > total_memory()) return CUDA_ERROR_OUT_OF_MEMORY;
    void* p = nullptr;
    if (posix_memalign(&p, 256, bytes) != 0) return CUDA_ERROR_OUT_OF_MEMORY;
    std::memset(p, 0xa5, bytes);  // fresh device memory is not zero: alloc_zeros must memset
    live[(std::uintptr_t)p] = bytes;
    *dptr = (CUdeviceptr)(std::uintptr_t)p;
    pool.used += bytes;
    pool.reserved = std::max(pool.reserved, pool.used);
    pool.used_high = std::max(pool.used_high, pool.used);
    pool.reserved_high = std::max(pool.reserved_high, pool.reserved);
    return CUDA_SUCCESS;
}

CUresult release(CUdeviceptr dptr) {
    if (CUresult r = need_context()) return r;
    auto it = live.find((std::uintptr_t)dptr);
    if (it == live.end()) return CUDA_ERROR_INVALID_VALUE;  // not a base address, or freed twice
    pool.used -= it->second;
    std::free((void*)it->first);
    live.erase(it);
    return CUDA_SUCCESS;
}

// At a synchronisation the pool gives back what it holds beyond the release threshold.
void trim_pool() { pool.reserved = std::max(pool.used, std::min(pool.reserved, pool.release_threshold)); }

CUresult copy(void* dst, const void* src, std::size_t bytes, bool dst_device, bool src_device) {
    if (CUresult r = need_context()) return r;
    if (bytes == 0) return CUDA_SUCCESS;
    if (!dst || !src) return CUDA_ERROR_INVALID_VALUE;
    if (dst_device && !range_ok((std::uintptr_t)dst, bytes)) return CUDA_ERROR_INVALID_VALUE;
    if (src_device && !range_ok((std::uintptr_t)src, bytes)) return CUDA_ERROR_INVALID_VALUE;
    std::memmove(dst, src, bytes);
    return CUDA_SUCCESS;
}

CUresult memset8(CUdeviceptr dst, unsigned char v, std::size_t n) {
    if (CUresult r = need_context()) return r;
    if (n == 0) return CUDA_SUCCESS;
    if (!range_ok((std::uintptr_t)dst, n)) return CUDA_ERROR_INVALID_VALUE;
    std::memset((void*)(std::uintptr_t)dst, v, n);
    return CUDA_SUCCESS;
}

// The `.entry` names of a PTX module, or an error for PTX this device and driver cannot load.
CUresult parse_ptx(const char* ptx, Module& m) {
    std::string s(ptx);
    if (s.find(".version") == std::string::npos || s.find(".target") == std::string::npos)
        return CUDA_ERROR_INVALID_IMAGE;  // cubins and fatbins are not emulated
    int major = 0, minor = 0, sm = 0;
    std::sscanf(s.c_str() + s.find(".version"), ".version %d.%d", &major, &minor);
    std::sscanf(s.c_str() + s.find(".target"), ".target sm_%d", &sm);
    if (major * 10 + minor > max_ptx_isa()) return CUDA_ERROR_UNSUPPORTED_PTX_VERSION;
    if (sm == 0 || sm > compute_capability()) return CUDA_ERROR_NO_BINARY_FOR_GPU;
    for (std::size_t at = s.find(".entry "); at != std::string::npos; at = s.find(".entry ", at + 1)) {
        std::size_t b = at + 7, e = b;
        while (e < s.size() && (std::isalnum((unsigned char)s[e]) || s[e] == '_')) ++e;
        m.entries.push_back(s.substr(b, e - b));
    }
    return CUDA_SUCCESS;
}

struct ErrorText {
    CUresult code;
    const char *name, *text;
};
const ErrorText ERRORS[] = {
    {CUDA_SUCCESS, "CUDA_SUCCESS", "no error"},
    {CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {CUDA_ERROR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {CUDA_ERROR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {CUDA_ERROR_INVALID_IMAGE, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
    {CUDA_ERROR_INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {CUDA_ERROR_NO_BINARY_FOR_GPU, "CUDA_ERROR_NO_BINARY_FOR_GPU", "no kernel image is available for execution on the device"},
    {CUDA_ERROR_UNSUPPORTED_PTX_VERSION, "CUDA_ERROR_UNSUPPORTED_PTX_VERSION", "the provided PTX was compiled with an unsupported toolchain"},
    {CUDA_ERROR_INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {CUDA_ERROR_NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {CUDA_ERROR_NOT_SUPPORTED, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
};

}  // namespace

#define LOCK std::lock_guard<std::recursive_mutex> guard(big_lock)

extern "C" {

void emu_register_kernel(const char* name, EmuLauncher launch, int cooperative) {
    kernels()[name] = Kernel{launch, cooperative != 0};
}

int emu_device_pointer_ok(const void* p) {
    LOCK;
    return range_ok((std::uintptr_t)p, 0);
}

// For the emulated cuBLAS: whether `bytes` from `p` are device memory.
int emu_device_range_ok(const void* p, std::size_t bytes) {
    LOCK;
    return range_ok((std::uintptr_t)p, bytes);
}

CUresult cuGetErrorName(CUresult e, const char** s) {
    for (const ErrorText& t : ERRORS)
        if (t.code == e) return *s = t.name, CUDA_SUCCESS;
    return CUDA_ERROR_INVALID_VALUE;
}

CUresult cuGetErrorString(CUresult e, const char** s) {
    for (const ErrorText& t : ERRORS)
        if (t.code == e) return *s = t.text, CUDA_SUCCESS;
    return CUDA_ERROR_INVALID_VALUE;
}

CUresult cuInit(unsigned flags) {
    LOCK;
    if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
    initialised = true;
    return device_count() > 0 ? CUDA_SUCCESS : CUDA_ERROR_NO_DEVICE;
}

CUresult cuDriverGetVersion(int* v) {
    if (!v) return CUDA_ERROR_INVALID_VALUE;
    *v = driver_version();
    return CUDA_SUCCESS;
}

// The driver's private tables, which NVRTC 13 asks for while compiling (it loads libcuda.so.1
// itself): none is emulated, so every table is refused, as a driver refuses an unknown one.
CUresult cuGetExportTable(const void** table, const void* /* CUuuid */) {
    if (!table) return CUDA_ERROR_INVALID_VALUE;
    *table = nullptr;
    return CUDA_ERROR_NOT_SUPPORTED;
}

CUresult cuDeviceGetCount(int* n) {
    LOCK;
    if (!initialised) return CUDA_ERROR_NOT_INITIALIZED;
    *n = device_count();
    return CUDA_SUCCESS;
}

CUresult cuDeviceGet(CUdevice* d, int ordinal) {
    LOCK;
    if (!initialised) return CUDA_ERROR_NOT_INITIALIZED;
    if (ordinal < 0 || ordinal >= device_count()) return CUDA_ERROR_INVALID_DEVICE;
    *d = ordinal;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetName(char* name, int len, CUdevice d) {
    if (d < 0 || d >= device_count()) return CUDA_ERROR_INVALID_DEVICE;
    if (!name || len <= 0) return CUDA_ERROR_INVALID_VALUE;
    std::snprintf(name, (std::size_t)len, "CUDA emulator (CPU, sm_%d)", compute_capability());
    return CUDA_SUCCESS;
}

CUresult cuDeviceTotalMem_v2(std::size_t* bytes, CUdevice d) {
    if (d < 0 || d >= device_count()) return CUDA_ERROR_INVALID_DEVICE;
    *bytes = total_memory();
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetAttribute(int* v, int attribute, CUdevice d) {
    if (d < 0 || d >= device_count()) return CUDA_ERROR_INVALID_DEVICE;
    switch (attribute) {
        case 1: case 2: case 3: *v = 1024; break;  // threads per block; block x, y
        case 4: *v = 64; break;                    // block z
        case 5: *v = 2147483647; break;            // grid x
        case 6: case 7: *v = 65535; break;         // grid y, z
        case 8: *v = 49152; break;                 // shared memory per block
        case 10: *v = 32; break;                   // warp size
        case 13: *v = 625000; break;               // clock, kHz
        case 16: *v = 8; break;                    // multiprocessors (Orin Nano)
        case 18: *v = 1; break;                    // integrated (Jetson)
        case 75: *v = compute_capability() / 10; break;
        case 76: *v = compute_capability() % 10; break;
        case 115: *v = 1; break;  // memory pools supported
        default: *v = 0;
    }
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetMemPool(void** p, CUdevice d) {
    if (d < 0 || d >= device_count()) return CUDA_ERROR_INVALID_DEVICE;
    *p = &pool;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetDefaultMemPool(void** p, CUdevice d) { return cuDeviceGetMemPool(p, d); }

CUresult cuMemPoolSetAttribute(void* p, int attribute, void* value) {
    LOCK;
    if (p != &pool || !value) return CUDA_ERROR_INVALID_VALUE;
    unsigned long long v = *(unsigned long long*)value;
    switch (attribute) {
        case 4: pool.release_threshold = v; return CUDA_SUCCESS;
        case 6:  // the high-water marks take only 0, which resets them to the current value
            if (v != 0) return CUDA_ERROR_INVALID_VALUE;
            pool.reserved_high = pool.reserved;
            return CUDA_SUCCESS;
        case 8:
            if (v != 0) return CUDA_ERROR_INVALID_VALUE;
            pool.used_high = pool.used;
            return CUDA_SUCCESS;
        default: return CUDA_ERROR_INVALID_VALUE;
    }
}

CUresult cuMemPoolGetAttribute(void* p, int attribute, void* value) {
    LOCK;
    if (p != &pool || !value) return CUDA_ERROR_INVALID_VALUE;
    unsigned long long* v = (unsigned long long*)value;
    switch (attribute) {
        case 4: *v = pool.release_threshold; break;
        case 5: *v = pool.reserved; break;
        case 6: *v = pool.reserved_high; break;
        case 7: *v = pool.used; break;
        case 8: *v = pool.used_high; break;
        default: return CUDA_ERROR_INVALID_VALUE;
    }
    return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxRetain(Context** c, CUdevice d) {
    LOCK;
    if (!initialised) return CUDA_ERROR_NOT_INITIALIZED;
    if (d < 0 || d >= device_count()) return CUDA_ERROR_INVALID_DEVICE;
    ++primary.refs;
    *c = &primary;
    return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxRelease_v2(CUdevice d) {
    LOCK;
    if (d < 0 || d >= device_count()) return CUDA_ERROR_INVALID_DEVICE;
    if (primary.refs == 0) return CUDA_ERROR_INVALID_CONTEXT;
    --primary.refs;
    return CUDA_SUCCESS;
}

CUresult cuCtxSetCurrent(Context* c) {
    if (!initialised) return CUDA_ERROR_NOT_INITIALIZED;
    if (c && c != &primary) return CUDA_ERROR_INVALID_CONTEXT;
    current = c;
    return CUDA_SUCCESS;
}

CUresult cuCtxGetCurrent(Context** c) {
    if (!initialised) return CUDA_ERROR_NOT_INITIALIZED;
    *c = current;
    return CUDA_SUCCESS;
}

CUresult cuCtxGetDevice(CUdevice* d) {
    if (CUresult r = need_context()) return r;
    *d = 0;
    return CUDA_SUCCESS;
}

CUresult cuCtxSynchronize() {
    LOCK;
    if (CUresult r = need_context()) return r;
    trim_pool();
    return CUDA_SUCCESS;
}

CUresult cuStreamCreate(void** s, unsigned) {
    LOCK;
    if (CUresult r = need_context()) return r;
    *s = &stream_tag;
    return CUDA_SUCCESS;
}

CUresult cuStreamDestroy_v2(void*) { return need_context(); }

CUresult cuStreamSynchronize(void*) {
    LOCK;
    if (CUresult r = need_context()) return r;
    trim_pool();
    return CUDA_SUCCESS;
}

CUresult cuStreamWaitEvent(void*, void*, unsigned) { return need_context(); }

CUresult cuEventCreate(Event** e, unsigned) {
    if (CUresult r = need_context()) return r;
    *e = new Event{std::chrono::steady_clock::now()};
    return CUDA_SUCCESS;
}

CUresult cuEventRecord(Event* e, void*) {
    if (!e) return CUDA_ERROR_INVALID_HANDLE;
    e->at = std::chrono::steady_clock::now();
    return CUDA_SUCCESS;
}

CUresult cuEventSynchronize(Event* e) { return e ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE; }
CUresult cuEventQuery(Event* e) { return e ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE; }

CUresult cuEventElapsedTime(float* ms, Event* a, Event* b) {
    if (!a || !b || !ms) return CUDA_ERROR_INVALID_HANDLE;
    *ms = std::chrono::duration<float, std::milli>(b->at - a->at).count();
    return CUDA_SUCCESS;
}

CUresult cuEventDestroy_v2(Event* e) {
    delete e;
    return CUDA_SUCCESS;
}

CUresult cuMemGetInfo_v2(std::size_t* free_bytes, std::size_t* total_bytes) {
    LOCK;
    if (CUresult r = need_context()) return r;
    *total_bytes = total_memory();
    *free_bytes = total_memory() - CONTEXT_BYTES - pool.reserved;
    return CUDA_SUCCESS;
}

CUresult cuMemAlloc_v2(CUdeviceptr* p, std::size_t bytes) {
    LOCK;
    return allocate(p, bytes);
}
CUresult cuMemAllocAsync(CUdeviceptr* p, std::size_t bytes, void*) {
    LOCK;
    return allocate(p, bytes);
}
CUresult cuMemFree_v2(CUdeviceptr p) {
    LOCK;
    return release(p);
}
CUresult cuMemFreeAsync(CUdeviceptr p, void*) {
    LOCK;
    return release(p);
}

CUresult cuMemsetD8_v2(CUdeviceptr d, unsigned char v, std::size_t n) {
    LOCK;
    return memset8(d, v, n);
}
CUresult cuMemsetD8Async(CUdeviceptr d, unsigned char v, std::size_t n, void*) {
    LOCK;
    return memset8(d, v, n);
}

CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, std::size_t n) {
    LOCK;
    return copy((void*)(std::uintptr_t)dst, src, n, true, false);
}
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, std::size_t n, void*) {
    LOCK;
    return copy((void*)(std::uintptr_t)dst, src, n, true, false);
}
CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, std::size_t n) {
    LOCK;
    return copy(dst, (const void*)(std::uintptr_t)src, n, false, true);
}
CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, std::size_t n, void*) {
    LOCK;
    return copy(dst, (const void*)(std::uintptr_t)src, n, false, true);
}
CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, std::size_t n) {
    LOCK;
    return copy((void*)(std::uintptr_t)dst, (const void*)(std::uintptr_t)src, n, true, true);
}
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, std::size_t n, void*) {
    LOCK;
    return copy((void*)(std::uintptr_t)dst, (const void*)(std::uintptr_t)src, n, true, true);
}

CUresult cuModuleLoadData(Module** m, const void* image) {
    LOCK;
    if (CUresult r = need_context()) return r;
    if (!m || !image) return CUDA_ERROR_INVALID_VALUE;
    auto* mod = new Module;
    if (CUresult r = parse_ptx((const char*)image, *mod)) {
        delete mod;
        return r;
    }
    *m = mod;
    return CUDA_SUCCESS;
}

CUresult cuModuleUnload(Module* m) {
    delete m;
    return CUDA_SUCCESS;
}

// A function must be in the module's PTX (as on a GPU) and built into the emulator.
CUresult cuModuleGetFunction(const Kernel** f, Module* m, const char* name) {
    LOCK;
    if (!m || !f || !name) return CUDA_ERROR_INVALID_HANDLE;
    bool in_ptx = false;
    for (const std::string& e : m->entries) in_ptx |= e == name;
    auto it = kernels().find(name);
    if (!in_ptx) return CUDA_ERROR_NOT_FOUND;
    if (it == kernels().end()) {
        std::fprintf(stderr, "emulated driver: kernel %s is in the PTX but not built into the emulator\n", name);
        return CUDA_ERROR_NOT_FOUND;
    }
    *f = &it->second;
    return CUDA_SUCCESS;
}

CUresult cuLaunchKernel(const Kernel* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                        unsigned by, unsigned bz, unsigned shared, void*, void** params,
                        void** extra) {
    LOCK;
    if (CUresult r = need_context()) return r;
    if (!f) return CUDA_ERROR_INVALID_HANDLE;
    if (gx == 0 || gy == 0 || gz == 0 || bx == 0 || by == 0 || bz == 0) return CUDA_ERROR_INVALID_VALUE;
    if (gx > 2147483647u || gy > 65535 || gz > 65535 || bz > 64) return CUDA_ERROR_INVALID_VALUE;
    if ((unsigned long long)bx * by * bz > 1024) return CUDA_ERROR_INVALID_VALUE;
    if (by != 1 || bz != 1 || shared != 0 || extra != nullptr) {
        std::fprintf(stderr, "emulated driver: only 1-D blocks without dynamic shared memory or `extra` are emulated\n");
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    if (!params) return CUDA_ERROR_INVALID_VALUE;
    // EMU_SKIP_KERNEL=name: that kernel returns at once, as a miscompiled or mis-launched one
    // might, so that the tests can see a wrong device result caught.
    static const std::string skip = [] {
        const char* v = std::getenv("EMU_SKIP_KERNEL");
        return std::string(v ? v : "");
    }();
    if (trace() || !skip.empty()) {
        for (auto& [name, k] : kernels()) {
            if (&k != f) continue;
            if (trace()) std::fprintf(stderr, "emulated driver: launch %s <<<(%u,%u,%u), %u>>>\n", name.c_str(), gx, gy, gz, bx);
            if (name == skip) return CUDA_SUCCESS;
        }
    }
    EmuGrid g{gx, gy, gz, bx};
    f->launch(&g, params);
    return CUDA_SUCCESS;
}

}  // extern "C"
