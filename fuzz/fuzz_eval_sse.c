/*
 * fuzz_eval_sse.c - libFuzzer harness for the streamed-response parser of
 * `dsv4 eval` (eval_sse_*): arbitrary bytes, fed in pieces whose sizes come
 * from the first byte, must never crash or leak, whatever the endpoint
 * sends.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "eval/eval.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    size_t step = (size_t)data[0] % 17 + 1;
    data++;
    size--;
    eval_response r;
    memset(&r, 0, sizeof r);
    r.tool_calls = json_array();
    eval_sse *p = eval_sse_new(&r, 0);
    for (size_t i = 0; i < size; i += step)
        eval_sse_feed(p, (const char *)data + i, size - i < step ? size - i : step);
    eval_sse_finish(p);
    eval_sse_free(p);
    eval_response_free(&r);
    return 0;
}
