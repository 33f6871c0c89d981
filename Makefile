# lorry: `make demo` and `make test` each install what they need and build first.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
CTEST_ARGS ?=

.PHONY: all bootstrap build demo test unit integration clean package test-package test-browser

all: build

bootstrap:
	@scripts/bootstrap

$(BUILD_DIR)/Makefile: CMakeLists.txt
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null

build: bootstrap $(BUILD_DIR)/Makefile
	cmake --build $(BUILD_DIR) -j$(JOBS)

demo: build
	$(BUILD_DIR)/lorry demo

# Unit tests need no server; integration tests start their own clusters.
# The browser test (label browser) needs chromium: `make test-browser`.
# The cross-version tests (label cross-version) need PostgreSQL 12 and 18
# besides Debian's 15: installed here once (scripts/install-pg-major).
test: build
	@scripts/install-pg-major 12 >/dev/null && scripts/install-pg-major 18 >/dev/null
	cd $(BUILD_DIR) && ctest --output-on-failure -j$(JOBS) -LE browser $(CTEST_ARGS)

unit: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j$(JOBS) -LE 'integration|browser'

integration: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j$(JOBS) -L integration

clean:
	rm -rf $(BUILD_DIR)

# A Debian package (binary, lorry(1), bash completion, systemd unit, example
# config): $(BUILD_DIR)/lorry_VERSION_ARCH.deb.
package: build
	cd $(BUILD_DIR) && cpack -G DEB

# Installs that package into a clean Debian 12 chroot (debootstrap, root,
# Debian's mirror) and checks what it installed. Not part of `test`.
test-package: package
	BUILD_DIR=$(BUILD_DIR) scripts/test-package

# The status page in headless chromium (installed here: not needed by
# `make test`); screenshots in $(BUILD_DIR)/screenshots/.
test-browser: build
	@scripts/bootstrap --browser
	cd $(BUILD_DIR) && ctest --output-on-failure -L browser $(CTEST_ARGS)

# Integration tests against another PostgreSQL major (12..18), e.g.
# `make test-pg MAJOR=17`: installs that server (scripts/install-pg-major) and
# runs the integration tests with PG_BINDIR pointing at it. Not part of `test`.
MAJOR ?= 17

.PHONY: test-pg test-matrix

test-pg: build
	@bindir=$$(scripts/install-pg-major $(MAJOR)) && \
	  echo "test-pg: PostgreSQL $(MAJOR) from $$bindir" && \
	  cd $(BUILD_DIR) && PG_BINDIR="$$bindir" ctest --output-on-failure -j2 -L integration $(CTEST_ARGS)

# The replication and live tests for every pair of provider (12 13 14 16 17
# 18) and subscriber (15 18) majors, one result line per pair; logs in
# $(BUILD_DIR)/test-matrix/. Not part of `test` (a long run). Narrow it with
# PROVIDERS="13 17" SUBSCRIBERS=18, widen it with MATRIX_TESTS (a ctest -R regex).
test-matrix: build
	scripts/test-matrix $(BUILD_DIR)
