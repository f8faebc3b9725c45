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
    int reasoning_effort_max; /* 1 = reasoning_effort "max" (same as
                                 reasoning_effort = "max") */
    const char *reasoning_effort; /* NULL (None), "high" or "max"; any other
                                     value is an error, as in Python */
    int drop_thinking;     /* default 1 */
    int add_default_bos_token; /* default 1 */
    const char *context_json;  /* JSON array of earlier messages (already in
                                  the KV cache, not rendered), or NULL */
    const char *tools_json;    /* request-level tools, an OpenAI "tools" JSON
                                  array, or NULL.  The encoder reads tools only
                                  from a system/developer message, so these are
                                  put on the leading system message (one with
                                  empty content is inserted when the
                                  conversation, or the context when given, does
                                  not start with one; a system message that
                                  already has tools keeps its own). */
} dsv4_chat_opts;

void dsv4_chat_opts_default(dsv4_chat_opts *o);

/* Render messages (a JSON array text, OpenAI-style message objects) into
 * the prompt string, exactly as encode_messages does.  *prompt malloc'd.
 * Returns 0, or -1 with err = "<PythonExceptionClass>: <message>" for the
 * inputs the official encoder rejects (e.g. "AssertionError: Invalid message
 * for role `developer`: ...") or "JSONDecodeError: ..." for bad JSON. */
int dsv4_chat_encode(const char *messages_json, const dsv4_chat_opts *o,
                     char **prompt, char *err, size_t errlen);

/* Special-token spellings the encoder and parser use. */
#define DSV4_CHAT_BOS "<｜begin▁of▁sentence｜>"
#define DSV4_CHAT_EOS "<｜end▁of▁sentence｜>"

/* Parse a complete completion text as parse_message_from_completion_text.
 * In thinking mode the text starts right after the prompt's <think>.
 * On success *result_json is the result object (keys in the order role,
 * content, reasoning_content, tool_calls; tool_calls items are
 * {"type":"function","function":{"name","arguments"}} with arguments the
 * JSON string the official parser builds) and returns 0.  On a parser
 * error returns -1, *result_json = NULL, and fills err_type
 * ("ValueError" or "AssertionError") and err (the Python message, cut to
 * errlen). */
int dsv4_dsml_parse(const char *text, size_t len, int thinking,
                    char **result_json, char *err_type, size_t typelen,
                    char *err, size_t errlen);

/* The same, as one malloc'd JSON object: {"result":{...}} or
 * {"error":{"type":...,"message":...}} with the message uncut. */
char *dsv4_dsml_parse_json(const char *text, size_t len, int thinking);

/*
 * Incremental parser, fed generated text pieces as they arrive (pieces may
 * split anywhere: inside markers, </think> or UTF-8 characters).  Emits
 * events as soon as each part is certain, holding back only text that may
 * be the start of a marker (</think>, "\n\n<｜DSML｜tool_calls", EOS, ...).
 *
 * For an output the full parser accepts, the concatenated REASONING and
 * CONTENT deltas equal reasoning_content and content, and each tool call
 * gets TOOL_START (its name), TOOL_ARGS deltas whose concatenation is its
 * arguments string, and TOOL_END.  Once the output is certain to be
 * malformed no more deltas are emitted; at finish an output the full parser
 * rejects yields one ERROR event (name = exception class, text = message,
 * the same as dsv4_dsml_parse gives), after which the deltas seen so far
 * should be discarded (or shown as raw text).  Output cut by a length limit
 * (no EOS) also ends in an ERROR ("Invalid format: missing EOS token"), but
 * its deltas are then exactly the text generated so far, minus a held-back
 * marker prefix.
 */
typedef enum {
    DSV4_EV_REASONING = 1,  /* text: a reasoning_content delta */
    DSV4_EV_CONTENT,        /* text: a content delta */
    DSV4_EV_TOOL_START,     /* index, name: a new tool call begins */
    DSV4_EV_TOOL_ARGS,      /* index, text: a delta of the JSON arguments */
    DSV4_EV_TOOL_END,       /* index */
    DSV4_EV_ERROR           /* name: exception class, text: message */
} dsv4_dsml_event_kind;

/* Pointers are valid only during the callback; text is not NUL-terminated
 * (use len), name is NUL-terminated. */
typedef struct dsv4_dsml_event {
    dsv4_dsml_event_kind kind;
    int index;              /* tool call index, 0-based */
    const char *name;
    size_t name_len;
    const char *text;
    size_t len;
} dsv4_dsml_event;

typedef void (*dsv4_dsml_cb)(void *user, const dsv4_dsml_event *ev);
typedef struct dsv4_dsml_stream dsv4_dsml_stream;
dsv4_dsml_stream *dsv4_dsml_stream_new(int thinking, dsv4_dsml_cb cb, void *user);
void dsv4_dsml_stream_free(dsv4_dsml_stream *s);
/* Feed decoded text (special tokens included as their text). */
void dsv4_dsml_stream_feed(dsv4_dsml_stream *s, const char *text, size_t len);
/* End of generation: flush pending text, close open calls (the parser
 * accepts some truncated tool-call blocks), or report the ERROR.  Returns
 * the number of tool calls, or -1 when the output is malformed. */
int dsv4_dsml_stream_finish(dsv4_dsml_stream *s);
/* After finish: the full result object as dsv4_dsml_parse builds it, or
 * NULL if the output was malformed.  Owned by the stream. */
const char *dsv4_dsml_stream_result(const dsv4_dsml_stream *s);

#ifdef __cplusplus
}
#endif
#endif
