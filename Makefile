# bbfs - build, test and demo.
#
#   make            build build/bbfs
#   make check      install missing packages, build, run unit and integration tests,
#                   then all of them again against an ASan+UBSan build (make asan)
#   make demo       start the fake Bitbucket server with demo data and mount it
#   make deps       only install missing Debian packages (quiet when none is missing)

VERSION := 0.1.0
CC ?= gcc
PYTHON := /usr/bin/python3
PKGS := fuse3 libcurl jansson openssl

# Debian packages the build, tests and demo need (checked with dpkg-query).
DEB_PACKAGES := build-essential pkg-config git fuse3 libfuse3-dev libcurl4-openssl-dev \
	libjansson-dev libssl-dev libcmocka-dev python3 python3-pytest python3-pytest-timeout \
	curl attr

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
FS_SRC := $(filter-out fs/main.c,$(wildcard fs/*.c))
LIB_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(API_SRC) $(FS_SRC))
MAIN_OBJ := $(BUILD)/fs/main.o
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

.PHONY: all deps check unit integration asan demo clean layering format

all: $(BUILD)/bbfs

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

# test_tree links the fs/ layer (less the glue to the real client) against a fake api.h.
TREE_TEST_OBJ := $(filter-out $(BUILD)/fs/responses.o,$(patsubst %.c,$(BUILD)/%.o,$(FS_SRC)))
$(BUILD)/tests/test_tree: tests/unit/test_tree.c $(TREE_TEST_OBJ) $(BUILD)/api/log.o
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS) $(shell pkg-config --libs cmocka 2>/dev/null)

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

# fs/ must never see curl, jansson or OpenSSL; api/ must never see FUSE.
layering:
	@! grep -nE '#include *<(curl|jansson|openssl)' fs/*.c fs/*.h || \
		{ echo "layering: fs/ includes an HTTP/JSON/TLS header"; exit 1; }
	@! grep -nE '#include *<fuse' api/*.c api/*.h || \
		{ echo "layering: api/ includes a FUSE header"; exit 1; }

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

integration: $(BUILD)/bbfs
	BBFS_BIN=$(abspath $(BUILD)/bbfs) $(PYTHON) -m pytest -q tests/integration

check: deps
	$(MAKE) layering
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

format:
	clang-format -i api/*.[ch] fs/*.[ch] tests/unit/*.c

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
