# imans: `make demo` runs the main job on its built-in example, `make test`
# runs the whole suite (unit, integration with real runtimes and TPMs, fuzz
# targets for a few seconds each).
GO ?= go
PREFIX ?= /usr/local
DESTDIR ?=
FUZZTIME ?= 3s
BIN := bin/imans

.PHONY: all build test unit integration fuzz fuzz-long bench demo deps vet clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/imans

deps:
	@missing=$$(for p in $$(cat .ci/packages); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }

unit:
	$(GO) test -count=1 ./...

integration: build
	$(GO) test -count=1 -tags integration -timeout 20m ./...

fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

fuzz-long:
	./scripts/fuzz.sh 2m

test: vet integration fuzz

bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./...

demo: deps build
	./scripts/demo.sh

clean:
	rm -rf bin out
