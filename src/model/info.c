/*
 * info.c - `dsv4 info`: what a checkpoint is, counted from the tensors the
 * model actually holds: layer types, parameter counts (total and active per
 * token), stored bytes, bytes read per decoded token, cache growth, and an
 * inventory check (every tensor used, sizes adding up to the files').
 */
#include "model/model.h"
#include <stdio.h>

static double wparams(const dsv4_weight *w) { return (double)w->rows * w->cols; }
static double wbytes(const dsv4_weight *w) { return (double)weight_bytes(w); }

/* Parameters and bytes of one block, split by part. */
typedef struct { double attn, attn_b, comp, comp_b, routed_one, routed_one_b, shared, shared_b, gate, gate_b, hcn, hcn_b; } layer_acc;

static void account_compressor(const compressor_w *c, layer_acc *a) {
    a->comp += wparams(&c->wkv) + wparams(&c->wgate) + (double)c->ratio * c->coff * c->d + c->d;
    a->comp_b += wbytes(&c->wkv) + wbytes(&c->wgate) + (double)c->ratio * c->coff * c->d * 4 + c->d * 2.0;
}

static void account_layer(const dsv4_model *m, int li, layer_acc *a) {
    const dsv4_config *c = &m->cfg;
    const layer_w *l = &m->layers[li];
    int D = c->dim, hc = c->hc_mult, mix = (2 + hc) * hc;
    *a = (layer_acc){0};
    const dsv4_weight *att[] = {&l->wq_a, &l->wq_b, &l->wkv, &l->wo_a, &l->wo_b};
    for (int i = 0; i < 5; i++) { a->attn += wparams(att[i]); a->attn_b += wbytes(att[i]); }
    a->attn += c->n_heads + c->q_lora_rank + c->head_dim;          /* sink, q_norm, kv_norm */
    a->attn_b += c->n_heads * 4.0 + (c->q_lora_rank + c->head_dim) * 2.0;
    if (l->ratio) account_compressor(&l->comp, a);
    if (l->has_indexer) {
        a->comp += wparams(&l->idx_wq_b) + wparams(&l->idx_weights_proj);
        a->comp_b += wbytes(&l->idx_wq_b) + wbytes(&l->idx_weights_proj);
        account_compressor(&l->idx_comp, a);
    }
    a->routed_one = wparams(&l->w1[0]) + wparams(&l->w2[0]) + wparams(&l->w3[0]);
    a->routed_one_b = wbytes(&l->w1[0]) + wbytes(&l->w2[0]) + wbytes(&l->w3[0]);
    if (l->has_shared) {
        a->shared = wparams(&l->sw1) + wparams(&l->sw2) + wparams(&l->sw3);
        a->shared_b = wbytes(&l->sw1) + wbytes(&l->sw2) + wbytes(&l->sw3);
    }
    a->gate = wparams(&l->gate) + (l->gate_bias ? c->n_routed_experts : 0);
    a->gate_b = wbytes(&l->gate) + (l->gate_bias ? c->n_routed_experts * 4.0 : 0);
    if (l->is_hash) {
        a->gate += (double)c->vocab_size * c->n_activated_experts;
        a->gate_b += (double)c->vocab_size * c->n_activated_experts * (l->tid2eid_i64 ? 8 : 4);
    }
    a->hcn = 2.0 * ((double)mix * hc * D + mix + 3) + 2.0 * D;
    a->hcn_b = 2.0 * ((double)mix * hc * D + mix + 3) * 4 + 2.0 * D * 2;
}

void model_account_compute(const dsv4_model *m, model_account *A) {
    const dsv4_config *c = &m->cfg;
    int D = c->dim, hc = c->hc_mult, E = c->n_routed_experts, K = c->n_activated_experts;
    *A = (model_account){0};
    A->params_embed = wparams(&m->embed);
    A->params_head = wparams(&m->head);
    A->bytes_head = wbytes(&m->head);
    double head_extra = (double)hc * hc * D + hc + 1 + D;                /* hc_head + norm */
    A->params_hc_norm = head_extra;
    A->bytes_total = wbytes(&m->embed) + wbytes(&m->head) + ((double)hc * hc * D + hc + 1) * 4 + D * 2.0;
    double dense_sum = 0;
    for (int li = 0; li < c->n_layers + c->n_mtp_layers; li++) {
        layer_acc a;
        account_layer(m, li, &a);
        double routed = a.routed_one * E, routed_b = a.routed_one_b * E;
        double lp = a.attn + a.comp + routed + a.shared + a.gate + a.hcn;
        double lb = a.attn_b + a.comp_b + routed_b + a.shared_b + a.gate_b + a.hcn_b;
        if (li >= c->n_layers) {
            const layer_w *l = &m->layers[li];
            double extra = wparams(&l->e_proj) + wparams(&l->h_proj) + 3.0 * D + (double)hc * hc * D + hc + 1;
            A->params_mtp += lp + extra;
            A->bytes_total += lb + wbytes(&l->e_proj) + wbytes(&l->h_proj) + 3.0 * D * 2 + ((double)hc * hc * D + hc + 1) * 4;
            continue;
        }
        A->params_attn += a.attn;
        A->params_compress += a.comp;
        A->params_routed += routed;
        A->params_shared += a.shared;
        A->params_gate += a.gate;
        A->params_hc_norm += a.hcn;
        A->bytes_total += lb;
        double dense_b = a.attn_b + a.comp_b + a.shared_b + a.gate_b + a.hcn_b;
        /* a hash layer reads one tid2eid row, not the table */
        if (m->layers[li].is_hash) dense_b -= (double)c->vocab_size * K * (m->layers[li].tid2eid_i64 ? 8 : 4) - K * 8.0;
        dense_sum += dense_b;
        A->bytes_per_token += dense_b + K * a.routed_one_b;
        A->params_active += a.attn + a.comp + a.shared + a.gate + a.hcn + K * a.routed_one;
        A->bytes_expert = a.routed_one_b;
        /* cache growth: compressed entries per token */
        const layer_w *l = &m->layers[li];
        if (l->ratio) {
            A->kv_bytes_per_token_bf16 += 2.0 * c->head_dim / l->ratio;
            if (l->has_indexer) A->kv_bytes_per_token_bf16 += 2.0 * c->index_head_dim / 4;
        }
    }
    A->kv_bytes_per_token = A->kv_bytes_per_token_bf16 * 2;   /* this engine's F32 cache */
    A->bytes_layer_dense = dense_sum / c->n_layers;
    A->bytes_per_token += wbytes(&m->embed) / c->vocab_size + A->bytes_head + head_extra * 4;
    A->params_active += D + A->params_head + head_extra;
    A->params_total = A->params_embed + A->params_head + A->params_attn + A->params_compress + A->params_routed +
                      A->params_shared + A->params_gate + A->params_hc_norm + A->params_mtp;
}

static const char *human(double v, char *buf, size_t n) {
    const char *u[] = {"", "K", "M", "G", "T"};
    int i = 0;
    while (v >= 1000 && i < 4) { v /= 1000; i++; }
    snprintf(buf, n, i ? "%.2f%s" : "%.0f%s", v, u[i]);
    return buf;
}

int dsv4_model_info(const dsv4_model *m, void *file) {
    FILE *f = file;
    const dsv4_config *c = &m->cfg;
    model_account A;
    model_account_compute(m, &A);
    char b1[32], b2[32];
    fprintf(f, "model        %s\n", m->dir);
    fprintf(f, "architecture DeepSeek-V4: dim %d, %d layers (+%d MTP), %d heads x %d (rope %d), q_lora %d, "
               "o_groups %d x o_lora %d, window %d\n", c->dim, c->n_layers, c->n_mtp_layers, c->n_heads, c->head_dim,
            c->rope_head_dim, c->q_lora_rank, c->o_groups, c->o_lora_rank, c->window_size);
    fprintf(f, "moe          %d routed experts (top-%d, %s route_scale %.2f) + %d shared, inter %d, %d hash layers, swiglu_limit %g\n",
            c->n_routed_experts, c->n_activated_experts, "sqrt-softplus", c->route_scale, c->n_shared_experts,
            c->moe_inter_dim, c->n_hash_layers, c->swiglu_limit);
    fprintf(f, "indexer      %d heads x %d, top-k %d; mHC %d streams, %d Sinkhorn iterations; vocab %d\n",
            c->index_n_heads, c->index_head_dim, c->index_topk, c->hc_mult, c->hc_sinkhorn_iters, c->vocab_size);
    const layer_w *l0 = &m->layers[c->n_layers > 3 ? 3 : 0];
    const char *tn[] = {"F32", "BF16", "FP8-E4M3 (128x128 UE8M0)", "MXFP4 (E2M1, UE8M0/32)"};
    fprintf(f, "formats      attention %s, routed experts %s, shared experts %s\n",
            l0->wq_a.type < 4 ? tn[l0->wq_a.type] : "GGUF", l0->w1[0].type < 4 ? tn[l0->w1[0].type] : "GGUF",
            l0->sw1.type < 4 ? tn[l0->sw1.type] : "GGUF");
    fprintf(f, "layers      ");
    int counts[3] = {0};
    for (int i = 0; i < c->n_layers + c->n_mtp_layers; i++) {
        int r = c->compress_ratios[i];
        const char *t = r == 0 ? "SWA" : r == 4 ? "CSA" : "HCA";
        counts[r == 0 ? 0 : r == 4 ? 1 : 2] += i < c->n_layers;
        if (i == c->n_layers) fprintf(f, " | MTP:");
        fprintf(f, " %d:%s%s%s", i, t, r > 4 ? "/" : "", r > 4 ? (snprintf(b1, sizeof b1, "%d", r), b1) : "");
        if (i < c->n_layers && m->layers[i].is_hash) fprintf(f, "(hash)");
    }
    fprintf(f, "\n             %d sliding-window, %d CSA (ratio 4 + indexer), %d HCA\n", counts[0], counts[1], counts[2]);
    fprintf(f, "parameters   total %s (%.0f), active per token %s\n", human(A.params_total, b1, sizeof b1), A.params_total,
            human(A.params_active, b2, sizeof b2));
    fprintf(f, "  embed %.0f + head %.0f + attention %.0f + compressors/indexers %.0f + routed experts %.0f\n"
               "  + shared experts %.0f + gates %.0f + mHC/norms %.0f + MTP %.0f = %.0f\n",
            A.params_embed, A.params_head, A.params_attn, A.params_compress, A.params_routed, A.params_shared,
            A.params_gate, A.params_hc_norm, A.params_mtp, A.params_total);
    fprintf(f, "bytes        stored %s; read per decoded token at context 0: %s (dense %s/layer, expert %s, head %s)\n",
            human(A.bytes_total, b1, sizeof b1), human(A.bytes_per_token, b2, sizeof b2),
            human(A.bytes_layer_dense, (char[32]){0}, 32), human(A.bytes_expert, (char[32]){0}, 32),
            human(A.bytes_head, (char[32]){0}, 32));
    fprintf(f, "kv cache     %.0f bytes/token of compressed entries in BF16 (spec), %.0f in this engine's F32 cache, "
               "plus a %d-token window per layer\n", A.kv_bytes_per_token_bf16, A.kv_bytes_per_token, c->window_size);
    int rc = 0;
    if (m->src.inventory) {
        long n;
        size_t bytes;
        m->src.inventory(m->src.ctx, &n, &bytes);
        int ok = (double)bytes == A.bytes_total;
        fprintf(f, "inventory    %ld tensors, %zu bytes in the files; the config accounts for %.0f bytes: %s\n", n, bytes,
                A.bytes_total, ok ? "OK (every tensor used, sizes add up)" : "MISMATCH");
        if (!ok) rc = -1;
    }
    return rc;
}
