# bbfs - build, test and demo.
#
#   make            build build/bbfs and build/git-credential-bbfs
#   make check      install missing packages, build, run unit and integration tests,
#                   then all of them again against an ASan+UBSan build (make asan)
#   make demo       start the fake Bitbucket server with demo data and mount it
#   make deps       only install missing Debian packages (quiet when none is missing)
#   make format     lay the C sources out with clang-format (check fails on a difference)
#   make install    install bbfs, git-credential-bbfs and bbfs(1) (PREFIX=/usr/local, DESTDIR=)
#   make uninstall  remove exactly those files

VERSION := 0.1.0
CC ?= gcc
PYTHON := /usr/bin/python3
PKGS := fuse3 libcurl jansson openssl libgit2 hiredis

# Debian packages the build, tests and demo need (checked with dpkg-query).
DEB_PACKAGES := build-essential pkg-config git fuse3 libfuse3-dev libcurl4-openssl-dev \
	libjansson-dev libssl-dev libcmocka-dev python3 python3-pytest python3-pytest-timeout \
	curl attr groff-base jq openssl libgit2-dev libhiredis-dev redis-server clang-format \
	python3-pytest-xdist

WARNINGS := -std=gnu11 -Wall -Wextra -Werror -Wformat=2 -Wshadow -Wstrict-prototypes \
	-Wmissing-prototypes -Wwrite-strings -Wvla
DEFINES := -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -DFUSE_USE_VERSION=314 -DBBFS_VERSION='"$(VERSION)"'
CFLAGS ?= -O2 -g
BUILD ?= build

PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
ALL_CFLAGS = $(WARNINGS) $(DEFINES) -I. $(PKG_CFLAGS) $(CFLAGS) -MMD -MP -pthread
ALL_LDFLAGS = $(LDFLAGS) -pthread

API_SRC := $(wildcard api/*.c)
FS_SRC := $(filter-out fs/main.c fs/credential.c,$(wildcard fs/*.c))
LIB_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(API_SRC) $(FS_SRC))
MAIN_OBJ := $(BUILD)/fs/main.o
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

.PHONY: all deps check unit integration asan demo clean layering format format-check install \
	uninstall bench

all: $(BUILD)/bbfs $(BUILD)/git-credential-bbfs

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/libbbfs.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/bbfs: $(MAIN_OBJ) $(BUILD)/libbbfs.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libbbfs.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(BUILD)/libbbfs.a $(PKG_LIBS) \
		$(shell pkg-config --libs cmocka 2>/dev/null)

# test_tree links the fs/ layer (less the glue to the real client and to git, whose hooks
# it stubs) against a fake api.h, and counts the store's opens through a wrapper (how often
# a content is opened). The shared cache's client (redis.h) is the real one: without a
# shared cache it is never called.
TREE_TEST_OBJ := $(filter-out $(BUILD)/fs/responses.o $(BUILD)/fs/packs.o $(BUILD)/fs/unpack.o,\
	$(patsubst %.c,$(BUILD)/%.o,$(FS_SRC))) \
	$(patsubst %.c,$(BUILD)/%.o,$(wildcard api/redis*.c) api/shared.c api/digest.c api/buf.c)
$(BUILD)/tests/test_tree: tests/unit/test_tree.c $(TREE_TEST_OBJ) $(BUILD)/api/log.o \
		$(BUILD)/api/waiting.o
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -Wl,--wrap=store_lookup -o $@ $^ $(PKG_LIBS) \
		$(shell pkg-config --libs cmocka 2>/dev/null)

# git's credential helper: its own main, only the token loader of fs/.
$(BUILD)/git-credential-bbfs: $(BUILD)/fs/credential.o $(BUILD)/fs/token.o
	$(CC) $(ALL_LDFLAGS) -o $@ $^

# make install [PREFIX=/usr/local] [DESTDIR=]; `mount -t fuse.bbfs` and fstab run
# bbfs through mount.fuse3 with mount(8)'s default PATH, which has /usr/local/bin.
PREFIX ?= /usr/local
BINDIR = $(DESTDIR)$(PREFIX)/bin
MAN1DIR = $(DESTDIR)$(PREFIX)/share/man/man1

install: $(BUILD)/bbfs $(BUILD)/git-credential-bbfs
	install -d $(BINDIR) $(MAN1DIR)
	install -m 755 $(BUILD)/bbfs $(BINDIR)/bbfs
	install -m 755 $(BUILD)/git-credential-bbfs $(BINDIR)/git-credential-bbfs
	install -m 644 man/bbfs.1 $(MAN1DIR)/bbfs.1

uninstall:
	rm -f $(BINDIR)/bbfs $(BINDIR)/git-credential-bbfs $(MAN1DIR)/bbfs.1

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' \
			|| missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# fs/ must never see curl, jansson, OpenSSL or hiredis; api/ must never see FUSE.
layering:
	@! grep -nE '#include *<(curl|jansson|openssl|hiredis)' fs/*.c fs/*.h || \
		{ echo "layering: fs/ includes an HTTP/JSON/TLS/Redis header"; exit 1; }
	@! grep -nE '#include *<fuse' api/*.c api/*.h || \
		{ echo "layering: api/ includes a FUSE header"; exit 1; }

unit: $(UNIT_BIN) fuzz-replay
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

# Integration tests run TEST_JOBS at a time (pytest-xdist: each has its own fake server, mount
# and cache; most of their time is spent waiting), then those marked serial (memory and load
# measurements, which other tests' load would skew) one after another.
TEST_JOBS ?= 4
integration: $(BUILD)/bbfs $(BUILD)/git-credential-bbfs
	BBFS_BIN=$(abspath $(BUILD)/bbfs) $(PYTHON) -m pytest -q -n $(TEST_JOBS) -m "not serial" \
		tests/integration
	BBFS_BIN=$(abspath $(BUILD)/bbfs) $(PYTHON) -m pytest -q -m serial tests/integration

check: deps
	$(MAKE) layering
	$(MAKE) format-check
	$(MAKE) all
	$(MAKE) unit
	$(PYTHON) -m pytest -q tests/fakebb
	$(MAKE) integration
	$(MAKE) asan

asan: deps
	$(MAKE) BUILD=build/asan CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer" \
		LDFLAGS="-fsanitize=address,undefined" unit integration

demo: deps all
	$(PYTHON) tests/fakebb/demo.py --bbfs $(abspath $(BUILD)/bbfs)

# Benchmark (issue 5): generates its data set once (build/bench-data), mounts bbfs against the
# fake server with 50 ms latency and prints one table. `make bench BENCH_ARGS=--quick` for one
# run of everything; see bench/run.py --help.
bench: deps all
	$(PYTHON) bench/run.py --bbfs $(abspath $(BUILD)/bbfs) $(BENCH_ARGS)

# Load test (issue 6; not part of check): 16 readers for LOAD_SECONDS against the fake server
# while faults come and go; every byte is compared with git. See tests/load.py --help.
LOAD_SECONDS ?= 120
.PHONY: load
load: deps all
	$(PYTHON) tests/load.py --bbfs $(abspath $(BUILD)/bbfs) --duration $(LOAD_SECONDS)

# The C sources, as .clang-format lays them out; check fails on any difference.
FORMATTED := $(wildcard api/*.[ch] fs/*.[ch] tests/unit/*.[ch] tests/fuzz/*.[ch])

format:
	clang-format -i $(FORMATTED)

format-check:
	@clang-format --dry-run -Werror $(FORMATTED) || \
		{ echo "format-check: run 'make format' (clang-format)"; exit 1; }

# Fuzzing (tests/fuzz/README.md). `make fuzz` builds one libFuzzer binary per
# tests/fuzz/fuzz_*.c with clang into build/fuzz/ (its own clang objects of api/ and fs/)
# and runs each for FUZZ_SECONDS: new inputs go to build/fuzz/corpus/T, crashes to
# build/fuzz/crashes/T/ (keep them in tests/fuzz/regressions/T/). fuzz-replay, part of
# unit, links the same targets with $(CC) to tests/fuzz/replay.c and runs them over
# tests/fuzz/corpus/T, which must hold inputs, and tests/fuzz/regressions/T when it exists.
FUZZ_SECONDS ?= 30
FUZZ_DEB_PACKAGES := clang libclang-rt-dev
FUZZ_CC := clang
FUZZ_DIR := build/fuzz
FUZZ_FLAGS := $(WARNINGS) $(DEFINES) -I. $(PKG_CFLAGS) -O1 -g -fno-omit-frame-pointer \
	-fno-sanitize-recover=all -pthread
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,%,$(FUZZ_SRC))
FUZZ_OBJ := $(patsubst %.c,$(FUZZ_DIR)/%.o,$(API_SRC) $(FS_SRC))
REPLAY_BIN := $(patsubst %,$(BUILD)/fuzz-replay/%,$(FUZZ_TARGETS))

.PHONY: fuzz fuzz-deps fuzz-build fuzz-replay valgrind valgrind-deps

# Installs the missing packages among $(1), the way deps does.
define deb_install
@missing=""; for p in $(1); do \
	dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' \
		|| missing="$$missing $$p"; \
done; \
if [ -n "$$missing" ]; then \
	echo "installing:$$missing"; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
fi
endef

# Debian's clang has no libFuzzer runtime: libclang-rt-dev brings libclang_rt.fuzzer.
fuzz-deps:
	$(call deb_install,$(FUZZ_DEB_PACKAGES))

fuzz: deps fuzz-deps
	$(MAKE) fuzz-build
	@failed=""; for t in $(FUZZ_TARGETS); do \
		mkdir -p $(FUZZ_DIR)/corpus/$$t $(FUZZ_DIR)/crashes/$$t; \
		echo "== $$t ($(FUZZ_SECONDS) s)"; \
		dict=""; [ -f tests/fuzz/$$t.dict ] && dict="-dict=tests/fuzz/$$t.dict"; \
		if $(FUZZ_DIR)/$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 -close_fd_mask=2 \
			-print_final_stats=1 $$dict -artifact_prefix=$(FUZZ_DIR)/crashes/$$t/ \
			$(FUZZ_DIR)/corpus/$$t tests/fuzz/corpus/$$t >$(FUZZ_DIR)/$$t.log 2>&1; then \
			grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss)' $(FUZZ_DIR)/$$t.log; \
		else \
			tail -n 60 $(FUZZ_DIR)/$$t.log; failed="$$failed $$t"; \
			echo "fuzz: $$t failed; keep the input in tests/fuzz/regressions/$$t/"; \
		fi; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: failed:$$failed"; exit 1; fi

fuzz-build: $(patsubst %,$(FUZZ_DIR)/%,$(FUZZ_TARGETS))

$(FUZZ_DIR)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link,address,undefined -MMD -MP -c -o $@ $<

$(FUZZ_DIR)/libbbfs.a: $(FUZZ_OBJ)
	rm -f $@
	ar rcs $@ $^

$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(FUZZ_DIR)/libbbfs.a
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer,address,undefined -o $@ $< \
		$(FUZZ_DIR)/libbbfs.a $(PKG_LIBS)

$(BUILD)/fuzz-replay/%: tests/fuzz/%.c tests/fuzz/replay.c tests/fuzz/fuzz.h $(BUILD)/libbbfs.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ tests/fuzz/$*.c tests/fuzz/replay.c \
		$(BUILD)/libbbfs.a $(PKG_LIBS)

fuzz-replay: $(REPLAY_BIN)
	@set -e; for t in $(FUZZ_TARGETS); do echo "== fuzz-replay $$t"; \
		regressions=tests/fuzz/regressions/$$t; [ -d $$regressions ] || regressions=; \
		$(BUILD)/fuzz-replay/$$t tests/fuzz/corpus/$$t $$regressions \
			2>$(BUILD)/fuzz-replay/$$t.err || { cat $(BUILD)/fuzz-replay/$$t.err; exit 1; }; done

# A mount of the demo data under valgrind memcheck (tests/valgrind.py); fails on any error.
valgrind-deps:
	$(call deb_install,valgrind)

valgrind: deps valgrind-deps
	$(MAKE) all
	$(PYTHON) tests/valgrind.py --bbfs $(abspath $(BUILD)/bbfs)

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
