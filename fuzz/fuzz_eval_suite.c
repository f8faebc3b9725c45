/*
 * fuzz_eval_suite.c - libFuzzer harness for suite parsing and the
 * acceptance checks of `dsv4 eval`: the input is a suite text; every item
 * it expands to is then checked against the suite text itself as an
 * answer (JSON extraction, schema validation, regexes, tool-chain final
 * checks).  Long-context sizes are capped so that one input stays small.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "eval/eval.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    eval_suite s;
    memset(&s, 0, sizeof s);
    char err[256];
    if (eval_suite_parse(&s, text, NULL, 0, NULL, 0, 4096, err, sizeof err) == 0) {
        for (size_t i = 0; i < s.n_items && i < 64; i++) {
            eval_check_result r;
            eval_check_text(s.items[i].check, text, &r);
            json_t *v = eval_extract_json(text);
            json_t *schema = json_object_get(s.items[i].check, "schema");
            if (v && schema) eval_schema_validate(schema, v, err, sizeof err);
            json_decref(v);
        }
        eval_suite_free(&s);
    }
    free(text);
    return 0;
}
