/*
 * api.h - request parsing and validation for the OpenAI (chat completions,
 * completions) and Anthropic (messages) schemas.
 *
 * A request body becomes an api_req: the prompt text (chat requests are
 * rendered with the V4 chat encoding: tools and response_format go into the
 * system message, tool results and Anthropic blocks are converted to the
 * encoder's OpenAI-style messages), the sampling parameters, the stop
 * strings, and the grammar that constrains decoding (forced or strict tool
 * calls, json_object / json_schema response formats, thinking prefix).
 * Any problem is a 4xx status with a one-line message; nothing here
 * touches the engine, so the fuzzer can drive it directly.
 */
#ifndef DSV4_SERVER_API_H
#define DSV4_SERVER_API_H
#include <stddef.h>
#include <stdint.h>

#include "server/grammar.h"

typedef enum { API_CHAT = 0, API_COMPLETIONS, API_MESSAGES } api_kind;

typedef struct api_req {
    api_kind kind;
    char *model;            /* as requested, or NULL */
    char *prompt;           /* rendered prompt text (malloc'd) */
    int stream, include_usage;
    int thinking;           /* output starts inside the reasoning */
    int has_tools;
    float temperature, top_p;
    int top_k;
    int has_seed;
    uint64_t seed;
    int max_tokens;         /* 0 = not given */
    char **stop;
    int n_stop;
    grammar *grammar;       /* owned here until taken */
    int json_output;        /* response_format asked for JSON */
} api_req;

/* Parse body as kind.  Returns 0, or an HTTP status (400, 404 ...) with a
 * message in err.  On success free with api_req_free. */
int api_parse(api_kind kind, const char *body, size_t len, api_req *out, char *err, size_t errlen);
void api_req_free(api_req *r);

/* OpenAI-style error body (Anthropic style for API_MESSAGES); malloc'd. */
char *api_error_json(api_kind kind, int status, const char *message, const char *code);

#endif
