/*
 * tokenizer_blob.S - embeds the DeepSeek-V4 tokenizer files (data/) into the
 * binary, so that the built-in default model and `dsv4 gen` can write
 * self-contained model directories without any file next to the program.
 *
 *   dsv4_tokenizer_json[], dsv4_tokenizer_json_len                (data/tokenizer.json)
 *   dsv4_tokenizer_config_json[], dsv4_tokenizer_config_json_len  (data/tokenizer_config.json)
 *
 * Each blob is followed by a NUL byte that its length does not count.  The
 * .incbin paths are relative to the repository root, where make runs.
 */
#if defined(__APPLE__)
#define SYM(x) _##x
#define RODATA .const
#else
#define SYM(x) x
#define RODATA .section .rodata
#endif

#define BLOB(name, file)                        \
    RODATA;                                     \
    .globl SYM(name);                           \
    .balign 16;                                 \
SYM(name):                                      \
    .incbin file;                               \
name##_end:                                     \
    .byte 0;                                    \
    .globl SYM(name##_len);                     \
    .balign 8;                                  \
SYM(name##_len):                                \
    .quad name##_end - SYM(name)

BLOB(dsv4_tokenizer_json, "data/tokenizer.json")
BLOB(dsv4_tokenizer_config_json, "data/tokenizer_config.json")

#if defined(__linux__) && defined(__ELF__)
    .section .note.GNU-stack,"",@progbits
#endif
