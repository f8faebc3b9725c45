/*
 * ggml_quants.h - the GGUF block formats (F16, Q8_0, MXFP4, k-quants,
 * IQ2_XXS, IQ3_XXS): row sizes, exact dequantisation, and dot products.
 */
#ifndef DSV4_GGML_QUANTS_H
#define DSV4_GGML_QUANTS_H
#include <stddef.h>
#include "num/linear.h"

/* Bytes of one row of `cols` values of a GGUF type (cols a multiple of the
 * block size), 0 for non-GGUF types. */
size_t ggml_row_size(wtype t, int cols);
/* Exact dequantisation of one row. */
void ggml_dequant_row(wtype t, const void *row, float *out, int cols);
#endif
