/* fuzz_safetensors.c - libFuzzer harness: the safetensors header parser on
 * arbitrary bytes must reject or accept cleanly, and every accepted tensor
 * must lie inside the buffer. */
#include "format/safetensors.h"
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_set set = {0};
    char err[256];
    if (st_parse(&set, 0, "fuzz", data, size, err, sizeof err) == 0 && st_finish(&set, err, sizeof err) == 0) {
        for (int i = 0; i < set.n_tensors; i++) {
            const st_tensor *t = &set.tensors[i];
            const uint8_t *p = t->data;
            if (p < data || p + t->nbytes > data + size) abort();
            volatile uint8_t sink = 0;
            for (size_t j = 0; j < t->nbytes; j += 4096) sink ^= p[j];
            (void)sink;
            if (st_find(&set, t->name) != t) abort();
        }
    }
    for (int i = 0; i < set.n_tensors; i++) free(set.tensors[i].name);
    free(set.tensors);
    return 0;
}
