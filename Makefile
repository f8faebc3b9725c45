# dsv4 - build with `make`, test with `make test`.
#
# Every .c (and .S) under src/ except src/cli goes into libdsv4.a; src/cli
# builds the `dsv4` program.  tests/test_*.c each become a test program that
# tests/run.sh runs together with the tests/t_*.sh scripts.
#
#   make            release build (build/)
#   make test       build + run the test suite
#   make test SAN=1 the same under AddressSanitizer + UBSan (build-san/)
#   make CC=clang   any C11 compiler
#   make bench / make fuzz   benchmarks and fuzzers (not part of make test)

CC      ?= cc
SAN     ?=
OPT     ?= -O2
ifeq ($(SAN),1)
BUILD   ?= build-san
SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT      = -O1
else
BUILD   ?= build
SANFLAGS =
endif

CFLAGS  ?=
CFLAGS  += -std=c11 $(OPT) -g -Wall -Wextra -D_GNU_SOURCE -pthread -Iinclude -Isrc $(SANFLAGS)
LDFLAGS += -pthread $(SANFLAGS)
LIBS    := -ljansson -lmicrohttpd -lcurl -lutf8proc -lpcre2-8 -lm

LIB_SRC  := $(filter-out src/cli/%,$(wildcard src/*/*.c))
LIB_ASM  := $(wildcard src/*/*.S)
CLI_SRC  := $(wildcard src/cli/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
BENCH_SRC:= $(wildcard bench/*.c)

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o) $(LIB_ASM:%.S=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_BIN:= $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all test check bench fuzz clean
all: $(BUILD)/dsv4 $(BUILD)/libdsv4.a dsv4

# Convenience link in the repository root for the release build.
dsv4: $(BUILD)/dsv4
	@if [ "$(BUILD)" = build ]; then ln -sf build/dsv4 dsv4; fi

$(BUILD)/libdsv4.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/dsv4: $(CLI_OBJ) $(BUILD)/libdsv4.a
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libdsv4.a $(LIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%.o: %.S
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/tests/%: tests/%.c tests/check.h $(BUILD)/libdsv4.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(BUILD)/libdsv4.a $(LDFLAGS) $(LIBS)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libdsv4.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libdsv4.a $(LDFLAGS) $(LIBS)

test check: $(BUILD)/dsv4 $(TEST_BIN)
	@BUILD=$(BUILD) sh tests/run.sh

bench: $(BUILD)/dsv4 $(BENCH_BIN)
	@BUILD=$(BUILD) sh bench/run.sh

fuzz:
	@sh fuzz/run.sh

clean:
	rm -rf build build-san build-fuzz dsv4

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)

# Data embedded with .incbin: rebuild the object when the data changes.
$(BUILD)/src/eval/eval_default_suite.o: eval/suites/default.jsonl
$(BUILD)/src/model/tokenizer_blob.o: data/tokenizer.json data/tokenizer_config.json
