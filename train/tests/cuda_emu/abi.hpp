// What the emulated driver (driver.cpp) and the emulated kernels (launch.hpp) share.
#pragma once
#include <cstddef>

struct EmuGrid {
    unsigned gx, gy, gz, bx;
};
using EmuLauncher = void (*)(const EmuGrid* grid, void** params);
// Defined in driver.cpp: the kernel table, and whether a pointer lies in a live device allocation.
extern "C" void emu_register_kernel(const char* name, EmuLauncher launch, int cooperative);
extern "C" int emu_device_pointer_ok(const void* p);
// Defined in driver.cpp, for the emulated cuBLAS: whether `bytes` from `p` are device memory.
extern "C" int emu_device_range_ok(const void* p, std::size_t bytes);
