// Channel concat/split: copy one part [N, Cp, HW] into/out of [N, Ct, HW] at channel offset.

extern "C" __global__ void concat_part(const float* part, float* out, int N, int Cp, int Ct,
                                       int off, int HW) {
    long long total = (long long)N * Cp * HW;
    GRID_STRIDE(i, total) {
        long long p = i % HW;
        long long c = (i / HW) % Cp;
        long long n = i / ((long long)Cp * HW);
        out[(n * Ct + off + c) * HW + p] = part[i];
    }
}

extern "C" __global__ void split_part(const float* whole, float* part, int N, int Cp, int Ct,
                                      int off, int HW) {
    long long total = (long long)N * Cp * HW;
    GRID_STRIDE(i, total) {
        long long p = i % HW;
        long long c = (i / HW) % Cp;
        long long n = i / ((long long)Cp * HW);
        part[i] = whole[(n * Ct + off + c) * HW + p];
    }
}
