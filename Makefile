# repute — see README.md. The two commands: `make run` and `make test`.
GO      ?= go
BIN     := bin/repute
DATA    ?= ./var
# What `repute --version` prints; without it, the binary reads its build info.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)

.PHONY: build run test test-unit bench lint fmt

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/repute

# Starts repute serve on the embedded store (DuckDB in $(DATA)).
run: build
	./$(BIN) serve --data $(DATA)

# Starts the test services (ClickHouse, ...), runs every test with their
# addresses in the environment, and stops the services even when tests fail.
test:
	scripts/test.sh

# Tests without the services: integration tests skip with a message.
test-unit:
	$(GO) test -race ./...

# Intake rate on DuckDB and ClickHouse beside their raw insert rates, and
# the parser benchmarks.
bench: build
	scripts/bench.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go') 2>/dev/null); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')
