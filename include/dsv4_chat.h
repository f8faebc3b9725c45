/*
 * dsv4_chat.h - DeepSeek-V4 chat encoding (encoding_dsv4.py) and the DSML
 * tool-call parser, full and incremental.
 *
 * Messages and results are exchanged as JSON text (OpenAI-style message
 * objects), so that the server, the CLI and the tests share one format.
 */
#ifndef DSV4_CHAT_H
#define DSV4_CHAT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dsv4_chat_opts {
    int thinking;          /* 0 = "chat", 1 = "thinking" */
    int reasoning_effort_max; /* 1 = reasoning_effort "max" */
    const char *reasoning_effort; /* raw value or NULL ("high", "max", ...) */
    int drop_thinking;     /* default 1 */
    int add_default_bos_token; /* default 1 */
    const char *context_json;  /* JSON array of earlier messages, or NULL */
} dsv4_chat_opts;

void dsv4_chat_opts_default(dsv4_chat_opts *o);

/* Render messages (a JSON array text) into the prompt string, exactly as
 * encode_messages does.  *prompt malloc'd.  Returns 0 or -1 with err. */
int dsv4_chat_encode(const char *messages_json, const dsv4_chat_opts *o,
                     char **prompt, char *err, size_t errlen);

/* Parse a complete completion text as parse_message_from_completion_text.
 * On success *result_json is the result object (role, content,
 * reasoning_content, tool_calls) and returns 0.  On a parser error returns
 * -1 and fills err_type ("ValueError", ...) and err. */
int dsv4_dsml_parse(const char *text, size_t len, int thinking,
                    char **result_json, char *err_type, size_t typelen,
                    char *err, size_t errlen);

/* Incremental parser, fed generated text pieces as they arrive.  Emits
 * events as soon as each part is certain. */
typedef enum {
    DSV4_EV_REASONING = 1,  /* text: a reasoning_content delta */
    DSV4_EV_CONTENT,        /* text: a content delta */
    DSV4_EV_TOOL_START,     /* index, name: a new tool call begins */
    DSV4_EV_TOOL_ARGS,      /* index, text: a delta of the JSON arguments */
    DSV4_EV_TOOL_END,       /* index */
    DSV4_EV_ERROR           /* text: malformed output message */
} dsv4_dsml_event_kind;

typedef struct dsv4_dsml_event {
    dsv4_dsml_event_kind kind;
    int index;
    const char *name;
    const char *text;
    size_t len;
} dsv4_dsml_event;

typedef void (*dsv4_dsml_cb)(void *user, const dsv4_dsml_event *ev);
typedef struct dsv4_dsml_stream dsv4_dsml_stream;
dsv4_dsml_stream *dsv4_dsml_stream_new(int thinking, dsv4_dsml_cb cb, void *user);
void dsv4_dsml_stream_free(dsv4_dsml_stream *s);
/* Feed decoded text (special tokens included as their text). */
void dsv4_dsml_stream_feed(dsv4_dsml_stream *s, const char *text, size_t len);
/* End of generation: flush pending text, close open calls. Returns the
 * number of tool calls seen. */
int dsv4_dsml_stream_finish(dsv4_dsml_stream *s);

#ifdef __cplusplus
}
#endif
#endif
