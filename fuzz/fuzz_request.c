/*
 * fuzz_request.c - libFuzzer harness for the server's request parser: the
 * first byte picks the endpoint (chat completions, completions, Anthropic
 * messages), the rest is the body.  Parsing renders the chat prompt and
 * compiles any response_format / tool grammar, so those are fuzzed too.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "server/api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    api_kind kind = (api_kind)(data[0] % 3);
    char err[256];
    api_req r;
    int status = api_parse(kind, (const char *)data + 1, size - 1, &r, err, sizeof err);
    if (status == 0) api_req_free(&r);
    else {
        char *e = api_error_json(kind, status, err, NULL);
        free(e);
    }
    return 0;
}
