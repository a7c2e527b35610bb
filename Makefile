# imans: `make demo` runs the main job on its built-in example, `make test`
# runs the whole suite (unit, integration with real runtimes and TPMs, fuzz
# targets for a few seconds each).
GO ?= go
PREFIX ?= /usr/local
DESTDIR ?=
FUZZTIME ?= 3s
BIN := bin/imans
WRAPPER := bin/imans-runtime
# A static binary: imans starts on every container's create and stop, and
# the C resolver that cgo would link into net costs start-up time.
export CGO_ENABLED := 0

.PHONY: all build test unit integration fuzz fuzz-long bench demo deps vet clean install

all: build

build:
	$(GO) build -tags urfave_cli_no_docs -o $(BIN) ./cmd/imans
	$(GO) build -o $(WRAPPER) ./cmd/imans-runtime

deps:
	@missing=$$(for p in $$(cat .ci/packages); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }

unit:
	$(GO) test -count=1 ./...

integration: build
	$(GO) test -count=1 -tags integration -timeout 20m ./...
	cd integration/hooksd && $(GO) test -mod=mod -count=1 ./...

fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

fuzz-long:
	./scripts/fuzz.sh 2m

test: vet integration fuzz

bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./...

demo: deps build
	./scripts/demo.sh

install: build
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/imans
	install -m 0755 $(WRAPPER) $(DESTDIR)$(PREFIX)/bin/imans-runtime
	$(DESTDIR)$(PREFIX)/bin/imans install podman --prefix $(PREFIX) --destdir "$(DESTDIR)"

clean:
	rm -rf bin out
