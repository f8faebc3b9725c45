/* fuzz_config.c - libFuzzer harness: config.json parsing on arbitrary text;
 * an accepted config must satisfy the invariants the model relies on. */
#include "dsv4.h"
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dsv4_config c;
    char err[256];
    if (dsv4_config_parse((const char *)data, size, &c, err, sizeof err) == 0) {
        if (c.dim % 128 || c.n_heads % c.o_groups || c.n_layers <= 0 || c.n_layers + c.n_mtp_layers > DSV4_MAX_LAYERS ||
            c.n_activated_experts > c.n_routed_experts)
            abort();
    }
    return 0;
}
