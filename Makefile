# aflorad build. `make` builds the engine library and the aflorad binary;
# `make test` runs every test; `make test-asan` runs the C tests under
# AddressSanitizer + UndefinedBehaviorSanitizer; `make test-tsan` runs the
# worker and daemon tests with two workers under ThreadSanitizer;
# `make CC=clang` builds with clang.
# Every build keeps assert(): the invariants asserted (shapes and strides,
# arena bounds, job state transitions) are cheap, outside inner loops, and a
# violated one is a bug better stopped than trained on. So no -DNDEBUG.

CC      ?= cc
BUILD   ?= build
OPT     ?= -O2 -march=x86-64-v2
CFLAGS  ?= $(OPT) -g
SANITIZE ?=
# Debian's, as engine/tokenizer/gen_unicode_tables.py's #! line (the tables name it).
PYTHON  ?= /usr/bin/python3

WARN    := -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
DEFS    := -D_GNU_SOURCE
INC     := -Iengine -Idaemon -Iapi -Itests/support
# OpenBLAS as pkg-config describes it; Debian 12's layout where it has no openblas.pc.
BLAS_CFLAGS := $(shell pkg-config --cflags openblas 2>/dev/null || echo -I/usr/include/x86_64-linux-gnu/openblas-pthread)
BLAS_LIBS   := $(shell pkg-config --libs openblas 2>/dev/null || echo -lopenblas)
OMP     := -fopenmp
ALL_CFLAGS := $(WARN) $(DEFS) $(INC) $(BLAS_CFLAGS) $(OMP) $(CFLAGS) $(SANITIZE) -MMD -MP
ifneq ($(filter -DNDEBUG,$(ALL_CFLAGS)),)
$(error aflorad keeps assert() in every build: drop -DNDEBUG)
endif
LDLIBS_ENGINE := $(BLAS_LIBS) -lm -lpthread
LDLIBS_DAEMON := -lmicrohttpd -lsqlite3 -lcjson
LDFLAGS += $(OMP) $(SANITIZE)

# Multi-ISA kernel sources (*_kern.c, see engine/base/isa.h): each is compiled
# once per vector level with that level's -march, into one object per level.
# -O3 and -fno-math-errno let the compiler vectorise their loops and inline
# sqrtf; nothing in them reads errno.
ISA_LEVELS := base avx2 avx512
ISA_FLAGS_base   := -march=x86-64-v2
ISA_FLAGS_avx2   := -march=x86-64-v3
ISA_FLAGS_avx512 := -march=x86-64-v4 -mprefer-vector-width=512
KERN_OPT ?= -O3 -fno-math-errno -fno-trapping-math
KERN_SRC   := $(wildcard engine/*/*_kern.c)
ENGINE_SRC := $(filter-out $(KERN_SRC),$(wildcard engine/*/*.c))
DAEMON_SRC := $(wildcard daemon/*.c) $(wildcard api/*.c)
TEST_SRC   := $(wildcard tests/test_*.c)
TEST_SUPPORT_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard tests/support/*.c))
BENCH_SRC  := $(wildcard bench/*.c)

ENGINE_OBJ := $(ENGINE_SRC:%.c=$(BUILD)/%.o) \
              $(foreach l,$(ISA_LEVELS),$(KERN_SRC:%.c=$(BUILD)/%.$(l).o))
DAEMON_OBJ := $(DAEMON_SRC:%.c=$(BUILD)/%.o)
DAEMON_LIB_OBJ := $(filter-out $(BUILD)/daemon/main.o,$(DAEMON_OBJ))
TEST_BIN   := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_BIN  := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

LIB := $(BUILD)/libaflora.a
BIN := $(BUILD)/aflorad

.PHONY: all test test-c test-asan test-integration-asan test-tsan test-clang test-valgrind bench clean \
        start deps check-generated regen-unicode format format-check
# Keep test objects: they are intermediate but rebuilding them every run is waste.
.SECONDARY:
all: $(LIB) $(BIN) $(TEST_BIN) $(BENCH_BIN)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# One rule per level; the level's flags come last so its -march wins over OPT's.
define KERN_RULE
$$(BUILD)/%.$(1).o: %.c
	@mkdir -p $$(dir $$@)
	$$(CC) $$(ALL_CFLAGS) $$(KERN_OPT) $$(ISA_FLAGS_$(1)) -DAFLO_ISA=$(1) -c $$< -o $$@
endef
$(foreach l,$(ISA_LEVELS),$(eval $(call KERN_RULE,$(l))))

$(LIB): $(ENGINE_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(DAEMON_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $(DAEMON_OBJ) $(LIB) $(LDLIBS_DAEMON) $(LDLIBS_ENGINE)

# Tests link the engine and the daemon/api objects (minus main) so every layer is testable.
$(BUILD)/tests/%: $(BUILD)/tests/%.o $(TEST_SUPPORT_OBJ) $(LIB) $(DAEMON_LIB_OBJ)
	$(CC) $(LDFLAGS) -o $@ $< $(TEST_SUPPORT_OBJ) $(DAEMON_LIB_OBJ) $(LIB) -lcmocka $(LDLIBS_DAEMON) $(LDLIBS_ENGINE)

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS_ENGINE)

# Generated sources. They are committed, so a fresh clone builds without the
# generators; make regenerates them when their input changes, and
# `make check-generated` (part of `make test`) proves the committed ones are
# what the generators make.
api/openapi_gen.c: api/openapi.json api/embed_openapi.sh
	api/embed_openapi.sh

daemon/migrations_gen.c: $(wildcard migrations/*.sql) migrations/embed.sh
	migrations/embed.sh

# The tokenizers' Unicode tables come from the running Python's unicodedata,
# which is not in the tree: regenerated only on request.
regen-unicode:
	$(PYTHON) engine/tokenizer/gen_unicode_tables.py > engine/tokenizer/unicode_tables.c.tmp || \
	  { rm -f engine/tokenizer/unicode_tables.c.tmp; exit 1; }
	mv engine/tokenizer/unicode_tables.c.tmp engine/tokenizer/unicode_tables.c

check-generated:
	@PYTHON=$(PYTHON) scripts/check-generated.sh

# One brace style for the C tree (.clang-format); generated files are left as
# their generators write them. `make format` rewrites, `make format-check`
# (part of `make test`) lists the files that differ.
FORMAT_SRC = $(filter-out %_gen.c %/unicode_tables.c,$(shell git ls-files '*.c' '*.h' 2>/dev/null))
format:
	clang-format -i $(FORMAT_SRC)

format-check:
	@bad=$$(for f in $(FORMAT_SRC); do clang-format $$f | cmp -s - $$f || echo $$f; done); \
	if [ -n "$$bad" ]; then echo "format-check: run 'make format' for:" $$bad; exit 1; fi

deps:
	@scripts/install-deps.sh

# `make test` and `make start` first install missing Debian packages (one
# shared script), then build in a sub-make so nothing compiles before that.
# Every test: C unit tests, then the integration tests that drive the binary.
test:
	@scripts/install-deps.sh --test
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory check-generated
	@$(MAKE) --no-print-directory format-check
	@tests/run.sh $(BUILD)

test-c:
	@$(MAKE) --no-print-directory $(TEST_BIN)
	@tests/run.sh $(BUILD) --c-only

# Same C tests under ASan + UBSan, in their own build tree.
test-asan:
	$(MAKE) $(ASAN_FLAGS) test-c

# The daemon built with ASan+UBSan, driven by the integration tests.
ASAN_FLAGS := BUILD=build-asan OPT=-O1 SANITIZE="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"
test-integration-asan:
	$(MAKE) $(ASAN_FLAGS) build-asan/aflorad
	@tests/run.sh build-asan --py-only

# ThreadSanitizer over what runs on several threads: the worker pool, the
# store, the API and checkpointing (C tests), the daemon with two workers
# and its generation pool (integration tests). Built without OpenMP: libgomp
# is not instrumented, so TSan would take its barriers for races; the
# kernels' OpenMP loops split rows among threads of their own, while the
# threads TSan must see (workers, HTTP, generation, SQLite) are plain
# pthreads. Any report fails the run (reports go to
# build-tsan/tsan.*); none is suppressed.
TSAN_FLAGS := BUILD=build-tsan OMP= OPT="-O1 -Wno-unknown-pragmas" \
	SANITIZE="-fsanitize=thread -fno-omit-frame-pointer"
TSAN_TESTS := test_workers test_store test_api test_checkpoint
TSAN_ENV := TSAN_OPTIONS="log_path=$(CURDIR)/build-tsan/tsan exitcode=66" \
	AFLORAD_TEST_WORKERS=2
test-tsan:
	$(MAKE) $(TSAN_FLAGS) build-tsan/aflorad $(TSAN_TESTS:%=build-tsan/tests/%)
	@rm -f build-tsan/tsan.*; rc=0; \
	$(TSAN_ENV) tests/run.sh build-tsan --c-only || rc=1; \
	$(TSAN_ENV) AFLORAD_BUILD=build-tsan python3 tests/integration/test_daemon.py \
	  >build-tsan/test_daemon.log 2>&1 || { tail -n 40 build-tsan/test_daemon.log; rc=1; }; \
	tail -n 3 build-tsan/test_daemon.log; \
	$(TSAN_ENV) AFLORAD_BUILD=build-tsan python3 tests/integration/test_daemon_generate.py \
	  >build-tsan/test_daemon_generate.log 2>&1 || { tail -n 40 build-tsan/test_daemon_generate.log; rc=1; }; \
	tail -n 3 build-tsan/test_daemon_generate.log; \
	if ls build-tsan/tsan.* >/dev/null 2>&1; then cat build-tsan/tsan.*; \
	  echo "ThreadSanitizer reported the races above"; rc=1; fi; \
	exit $$rc

test-clang:
	$(MAKE) CC=clang BUILD=build-clang all

# Engine and daemon C tests under valgrind's memcheck: any leak or error fails.
test-valgrind:
	@$(MAKE) --no-print-directory $(TEST_BIN)
	@VALGRIND="valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=99" tests/run.sh $(BUILD) --c-only

bench: $(BENCH_BIN)

start:
	@scripts/install-deps.sh
	@$(MAKE) --no-print-directory $(BIN)
	$(BIN) serve

clean:
	rm -rf build build-asan build-clang build-tsan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
