// Exhaustive check of the generated 1-D F(2,3) datapath (WinogradF23Core) against a direct
// 3-tap FIR computed here with plain 64-bit integers, for EVERY input at the widths it was
// generated for (DW-bit data d0..d3, GW-bit weights g0..g2, all signed). Built by
// formal/winograd/prove_f23.py with: verilator --cc --exe --build -DDW=.. -DGW=.. -DYW=..
#include <cstdint>
#include <cstdio>
#include "Vcore.h"

static int64_t sext(uint64_t v, int w) {
    uint64_t m = 1ull << (w - 1);
    v &= (1ull << w) - 1;
    return (int64_t)((v ^ m) - m);
}

int main() {
    Vcore top;
    const int64_t dlo = -(1ll << (DW - 1)), dhi = (1ll << (DW - 1)) - 1;
    const int64_t glo = -(1ll << (GW - 1)), ghi = (1ll << (GW - 1)) - 1;
    const uint64_t dm = (1ull << DW) - 1, gm = (1ull << GW) - 1;
    uint64_t checked = 0, failures = 0;
    for (int64_t g0 = glo; g0 <= ghi; g0++)
    for (int64_t g1 = glo; g1 <= ghi; g1++)
    for (int64_t g2 = glo; g2 <= ghi; g2++) {
        top.g0 = g0 & gm; top.g1 = g1 & gm; top.g2 = g2 & gm;
        for (int64_t d0 = dlo; d0 <= dhi; d0++)
        for (int64_t d1 = dlo; d1 <= dhi; d1++)
        for (int64_t d2 = dlo; d2 <= dhi; d2++)
        for (int64_t d3 = dlo; d3 <= dhi; d3++) {
            top.d0 = d0 & dm; top.d1 = d1 & dm; top.d2 = d2 & dm; top.d3 = d3 & dm;
            top.eval();
            int64_t y0 = d0 * g0 + d1 * g1 + d2 * g2;
            int64_t y1 = d1 * g0 + d2 * g1 + d3 * g2;
            int64_t r0 = sext(top.y0, YW), r1 = sext(top.y1, YW);
            checked++;
            if (r0 != y0 || r1 != y1) {
                if (failures++ < 5)
                    printf("MISMATCH d=(%lld,%lld,%lld,%lld) g=(%lld,%lld,%lld): rtl (%lld,%lld) direct (%lld,%lld)\n",
                           (long long)d0, (long long)d1, (long long)d2, (long long)d3, (long long)g0,
                           (long long)g1, (long long)g2, (long long)r0, (long long)r1, (long long)y0, (long long)y1);
            }
        }
    }
    printf("checked %llu input combinations, %llu mismatches\n", (unsigned long long)checked,
           (unsigned long long)failures);
    return failures ? 1 : 0;
}
