/*
 * eval_default_suite.S - the built-in default suite of `dsv4 eval`, so that
 * `dsv4 eval` without --suite works from any directory.  The assembler
 * embeds eval/suites/default.jsonl (path relative to the repository root,
 * where make runs) followed by a NUL byte.
 */
    .section .rodata
    .global eval_default_suite_text
    .type eval_default_suite_text, %object
    .balign 16
eval_default_suite_text:
    .incbin "eval/suites/default.jsonl"
    .byte 0
    .size eval_default_suite_text, . - eval_default_suite_text
    .section .note.GNU-stack,"",%progbits
