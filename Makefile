# scribefs build, test and tooling. `make test` works on a fresh Debian
# machine with Go: run as root, it installs the Debian packages and the MinIO
# server binary it needs, then runs every test (unit and integration, -race).

SHELL := /bin/bash
GO ?= go
TOOLS := $(CURDIR)/.tools/bin
MINIO := $(TOOLS)/minio
MINIO_MODULE := github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c
DEBIAN_PACKAGES := fuse3 rsync fio ca-certificates python3
MNT ?= $(HOME)/scribefs
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
TEST_FLAGS ?= -race -count=1 -timeout 40m

export MINIO_BIN := $(MINIO)

.PHONY: build test minio deps run clean fuzz bench bench-deps

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o bin/scribefs ./cmd/scribefs

# MinIO server, built once with `go install` into .tools/bin and reused.
minio: $(MINIO)
$(MINIO):
	@echo "installing the MinIO server into $(TOOLS) (a few minutes the first time)"
	GOBIN=$(TOOLS) $(GO) install $(MINIO_MODULE)

# Debian packages the tests drive: fusermount3, rsync, fio.
deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing Debian packages:$$missing"; \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
		else echo "missing Debian packages:$$missing (run as root, or: sudo apt-get install$$missing)"; exit 1; fi; \
	fi

# Unit and integration tests against a real MinIO and real FUSE mounts. The
# full log is in .tools/test.log; the summary shows every package, every
# top-level test, the conformance suites and any failure.
test: deps minio
	@mkdir -p .tools
	set -o pipefail; $(GO) test $(TEST_FLAGS) -v ./... 2>&1 | tee .tools/test.log | \
		grep -E --line-buffered '^(ok|FAIL|--- |panic:|PASS$$)|^\s+--- FAIL|^\s+[A-Za-z0-9_]+\.go:[0-9]+: |Conformance'

# The benchmark harness: baselines, scribefs and the peers (s3fs, rclone
# mount) in one run against one MinIO. QUICK=1 scales sizes down (CI runs it
# so the harness keeps working; its results go to .tools, not BENCHMARKS.md).
BENCH_PACKAGES := fio s3fs rclone
bench-deps:
	@missing=""; for p in $(BENCH_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
		else echo "missing Debian packages:$$missing"; exit 1; fi; \
	fi

bench: deps bench-deps minio
	@mkdir -p .tools
	if [ -n "$(QUICK)" ]; then \
		QUICK=1 $(GO) run ./bench -out .tools/bench-quick.md -svg .tools/bench-quick.svg; \
	else \
		$(GO) run ./bench -out BENCHMARKS.md -svg bench/chart.svg; \
	fi

# Mount the embedded default (hot tier only) at $(MNT).
run: build
	mkdir -p $(MNT)
	./bin/scribefs mount $(MNT)

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParseID -fuzztime 20s ./segment/
	$(GO) test -run '^$$' -fuzz FuzzChunkRanges -fuzztime 20s ./backend/local/
	$(GO) test -run '^$$' -fuzz FuzzRequest -fuzztime 20s ./internal/control/
	$(GO) test -run '^$$' -fuzz FuzzParseTrailer -fuzztime 20s ./backend/compress/
	$(GO) test -run '^$$' -fuzz FuzzSidecar -fuzztime 20s ./backend/s3/
	$(GO) test -run '^$$' -fuzz FuzzLease -fuzztime 20s ./backend/s3/
	$(GO) test -run '^$$' -fuzz FuzzLoad -fuzztime 20s ./internal/config/

clean:
	rm -rf bin

# Install the binary, the mount(8) helper (for fstab and
# `mount -t fuse.scribefs`), the systemd unit and bash completion.
# DESTDIR and PREFIX work as usual; the helper goes to /sbin, where mount(8)
# looks for it.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= /sbin
.PHONY: install
install: build
	install -D -m 0755 bin/scribefs $(DESTDIR)$(BINDIR)/scribefs
	sed 's|@BINDIR@|$(BINDIR)|' contrib/mount.fuse.scribefs > contrib/.mount.fuse.scribefs.tmp
	install -D -m 0755 contrib/.mount.fuse.scribefs.tmp $(DESTDIR)$(SBINDIR)/mount.fuse.scribefs
	rm -f contrib/.mount.fuse.scribefs.tmp
	sed 's|/usr/local/bin/scribefs|$(BINDIR)/scribefs|' contrib/scribefs@.service > contrib/.scribefs@.service.tmp
	install -D -m 0644 contrib/.scribefs@.service.tmp $(DESTDIR)$(PREFIX)/lib/systemd/system/scribefs@.service
	rm -f contrib/.scribefs@.service.tmp
	mkdir -p $(DESTDIR)$(PREFIX)/share/bash-completion/completions
	bin/scribefs completion bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/scribefs
