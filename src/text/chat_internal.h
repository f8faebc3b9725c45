/*
 * chat_internal.h - shared pieces of the chat encoder (chat.c) and the DSML
 * parser (dsml.c): the special-token spellings and the encoder entry point
 * that works on already parsed values (used by the CLI and the fuzzer).
 */
#ifndef DSV4_CHAT_INTERNAL_H
#define DSV4_CHAT_INTERNAL_H

#include <stddef.h>
#include "dsv4_chat.h"
#include "text/pyjson.h"

#define DSV4_BOS_TOKEN DSV4_CHAT_BOS
#define DSV4_EOS_TOKEN DSV4_CHAT_EOS
#define DSV4_DSML_TOKEN "｜DSML｜"

/* encode_messages() arguments as Python values. */
typedef struct chat_values {
    int thinking;               /* thinking_mode == "thinking" */
    int drop_thinking;          /* truthiness of drop_thinking */
    int add_default_bos_token;
    pj *effort;                 /* reasoning_effort, NULL for None */
    pj *tools;                  /* request-level tools (dsv4_chat_opts.tools_json) or NULL */
} chat_values;

/* encode_messages(messages, context=context, ...).  messages and context
 * (NULL or a list) live in arena a, which the encoder also allocates from
 * (and may modify: tool-result blocks are reordered in place, as in Python).
 * *prompt is malloc'd (NUL-terminated; *prompt_len, if given, is its length,
 * which matters when the text holds a NUL).  Errors: -1 and *err is a
 * malloc'd "<PythonExceptionClass>: message". */
int chat_encode_values(pj_arena *a, pj *messages, pj *context, const chat_values *v,
                       char **prompt, size_t *prompt_len, char **err);

#endif
