/*
 * server.h - the OpenAI/Anthropic-compatible HTTP server (libmicrohttpd,
 * one thread per connection; generation runs on the scheduler thread).
 *
 * Endpoints: POST /v1/chat/completions, /v1/completions, /v1/messages;
 * GET /v1/models, /health, /metrics.  Streaming responses are Server-Sent
 * Events.  A client that disconnects cancels its generation.
 */
#ifndef DSV4_SERVER_SERVER_H
#define DSV4_SERVER_SERVER_H
#include <stddef.h>

#include "server/generate.h"
#include "server/sched.h"

typedef struct server_opts {
    const char *host;        /* default 127.0.0.1 */
    int port;                /* 0 = any free port */
    const char *api_key;     /* NULL = no authentication */
    size_t max_body;         /* bytes (default 8 MiB) */
    int max_tokens_limit;    /* largest max_tokens accepted (default n_ctx) */
    int default_max_tokens;  /* when a chat request gives none (default: the rest of the context) */
    int threads;             /* connection limit (default 64) */
    sched_opts sched;
} server_opts;

typedef struct server server;

server *server_start(gen_model *gm, const server_opts *o, char *err, size_t errlen);
int server_port(const server *s);
void server_stop(server *s);

#endif
