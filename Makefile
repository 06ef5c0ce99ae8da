# repute — see README.md. The two commands: `make run` and `make test`.
GO      ?= go
BIN     := bin/repute
DATA    ?= ./var
# What `repute --version` prints; without it, the binary reads its build info.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)

.PHONY: build run test test-unit bench lint fmt plugin plugin-test grafana-check node-deps dashboard-images

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/repute

# Starts repute serve on the embedded store (DuckDB in $(DATA)).
run: build
	./$(BIN) serve --data $(DATA)

# Starts the test services (ClickHouse, ...), runs every test with their
# addresses in the environment, and stops the services even when tests fail.
# Its go test ./... includes ./dashboards, which is grafana-check (the
# dashboards' lint and every panel's SQL on the test ClickHouse); then the
# plugin's own module and module.js.
test:
	scripts/test.sh
	$(MAKE) plugin-test

# The Grafana data source plugin (dashboards/plugin, a Go module of its own:
# the SDK's ~450 MB of modules stay out of repute's): the folder Grafana
# loads, named by the plugin id. Copy it into Grafana's plugins directory
# (README.md, "Grafana").
PLUGIN_ID   := repute-deliverability-datasource
PLUGIN_DIST := dist/$(PLUGIN_ID)
plugin:
	rm -rf $(PLUGIN_DIST)
	mkdir -p $(PLUGIN_DIST)/img
	cp dashboards/plugin/src/plugin.json dashboards/plugin/src/module.js $(PLUGIN_DIST)/
	cp dashboards/plugin/src/img/logo.svg $(PLUGIN_DIST)/img/
	cd dashboards/plugin && CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -tags arrow_json_stdlib \
	  -ldflags "-w -s" -o $(CURDIR)/$(PLUGIN_DIST)/gpx_repute_linux_amd64 .

# The npm packages module.js is tested against (Grafana supplies them at run
# time; jsdom stands in for the browser), in a cache directory that is not
# committed; node and npm from Debian when missing.
NODE_CACHE  := .cache/grafana-node
NODE_PKGS   := @grafana/data@13.2.3 @grafana/runtime@13.2.3 jsdom@26
SUDO        := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
node-deps:
	@command -v node >/dev/null && command -v npm >/dev/null || \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q nodejs npm
	@mkdir -p $(NODE_CACHE)
	@if [ "$$(cat $(NODE_CACHE)/.installed 2>/dev/null)" != "$(NODE_PKGS)" ]; then \
	  echo '{"name": "repute-plugin-test-deps", "private": true}' > $(NODE_CACHE)/package.json; \
	  cd $(NODE_CACHE) && npm install --no-audit --no-fund --ignore-scripts $(NODE_PKGS) && \
	  echo "$(NODE_PKGS)" > .installed; \
	fi

# The plugin's tests: direct calls, the SDK's gRPC harness and the built
# executable over go-plugin, each against a real repute serve; the folder
# make plugin built; module.js under node --test.
plugin-test: plugin node-deps
	cd dashboards/plugin && $(GO) vet ./... && \
	  PLUGIN_DIST=$(CURDIR)/$(PLUGIN_DIST) $(GO) test -count=1 ./...
	NODE_ENV=production NODE_PATH=$(CURDIR)/$(NODE_CACHE)/node_modules node --test dashboards/plugin/src/module.test.cjs

# The dashboards' lint and every SQL panel run on the test ClickHouse
# (dashboards/grafana_test.go). Uses REPUTE_TEST_CLICKHOUSE when set;
# otherwise starts the test services for the run.
grafana-check:
	@if [ -n "$$REPUTE_TEST_CLICKHOUSE" ]; then \
	  REPUTE_TEST_REQUIRE_SERVICES=1 $(GO) test -count=1 ./dashboards/; \
	else \
	  env_file=$$(mktemp); trap 'scripts/testenv.sh down || true; rm -f "$$env_file"' EXIT; \
	  scripts/testenv.sh up > "$$env_file" && set -a && . "$$env_file" && set +a && \
	  REPUTE_TEST_REQUIRE_SERVICES=1 $(GO) test -count=1 ./dashboards/; \
	fi

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

# docs/grafana-<uid>.png: each dashboard's layout (panel titles on the grid),
# drawn by dashboards/cmd/layout and photographed by headless Chromium; they
# stand in for screenshots, which need a Grafana server. Run after changing
# a dashboard, and commit the images.
dashboard-images:
	@command -v chromium >/dev/null || $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q chromium
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(GO) run ./dashboards/cmd/layout -dashboards dashboards -out "$$tmp" | while read -r page w h; do \
	  uid=$$(basename "$$page" .html); \
	  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
	    --disable-component-update --disable-sync --hide-scrollbars --user-data-dir="$$tmp/profile" \
	    --window-size=$$w,$$h --screenshot=docs/grafana-$$uid.png "file://$$page" 2>/dev/null || exit 1; \
	  echo "docs/grafana-$$uid.png"; \
	done
