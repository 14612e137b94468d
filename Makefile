# Gantry's build facts live here, once.
#  - Trivy (a dependency) needs GOEXPERIMENT=jsonv2 for every go build/test/vet.
#  - Static binaries: CGO_ENABLED=0.
export GOEXPERIMENT := jsonv2
export CGO_ENABLED := 0
GO ?= go

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
VERSION_PKG := github.com/gantry-dev/gantry/internal/version
LDFLAGS := -s -w -X $(VERSION_PKG).version=$(VERSION) -X $(VERSION_PKG).commit=$(COMMIT)
BIN     := $(CURDIR)/bin
# Integration tests share one BuildKit daemon and API server; a generous
# timeout covers a cold build cache.
TEST_TIMEOUT ?= 30m
PKGS ?= ./...

.PHONY: all build test test-run test-short test-integration lint fmt vet staticcheck demo testenv-up testenv-down testenv-status fuzz bench clean

all: build

## build: bin/gantry, the command users type (help and version, then it execs
## the role binary of the command), and the role binaries beside it:
## gantry-core (every command), gantry-admission, gantry-build and
## gantry-policy (the same code with only their commands linked; see
## cmd/gantry/main.go).
## ROLES picks the narrower role binaries to build; those left out are
## removed from BIN, so that a stale one never runs in place of gantry-core.
ALL_ROLES := admission build policy
ROLES := $(ALL_ROLES)
build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/gantry ./cmd/gantry
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/gantry-core ./cmd/gantry-core
	@for r in $(ROLES); do echo "$(GO) build -tags gantry_role_$$r … -o $(BIN)/gantry-$$r ./cmd/gantry-core"; \
	  $(GO) build -trimpath -tags gantry_role_$$r -ldflags "$(LDFLAGS)" -o $(BIN)/gantry-$$r ./cmd/gantry-core || exit 1; done
	@rm -f $(addprefix $(BIN)/gantry-,$(filter-out $(ROLES),$(ALL_ROLES)))

## test: the whole suite, as CI runs it: start the test environment, lint, all tests.
## Lint runs beside the tests (they mostly wait on daemons and child
## processes), and TEST_PARALLEL tests marked t.Parallel run at once in a
## package (go's default is the core count, 2 here, too few for waiting tests).
## Test binaries are linked without DWARF (-w): a fifth less link CPU for
## the ~40 of them; failures and panics still print file:line (the line
## table stays). For a debugger, TEST_LDFLAGS= (dlv test builds its own).
## Under make test, go test skips its vet subset: lint's go vet runs every
## analyzer on the same packages, test files included.
TEST_PARALLEL ?= 4
TEST_LDFLAGS ?= -w
TEST_VET ?=
test: testenv-up
	@$(MAKE) --no-print-directory -j2 lint test-run TEST_VET=off

test-run:
	$(GO) test -parallel $(TEST_PARALLEL) -ldflags '$(TEST_LDFLAGS)' $(if $(TEST_VET),-vet=$(TEST_VET)) -timeout $(TEST_TIMEOUT) $(PKGS)

## test-short: unit tests only (no daemons needed).
test-short:
	$(GO) test -short -timeout 10m $(PKGS)

lint: fmt vet staticcheck

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^hack/kube-rig/')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

staticcheck:
	sc=$$(hack/testenv which staticcheck) && $$sc $(PKGS)

testenv-up:
	hack/testenv up

testenv-down:
	hack/testenv down

testenv-status:
	hack/testenv status

## demo: start the test environment and run the demo (see README). It
## installs only what the demo needs (hack/testenv up demo); make test adds
## the test-only tools.
demo:
	hack/demo

## fuzz: run each fuzz target for FUZZTIME (default 20s).
FUZZTIME ?= 20s
fuzz:
	hack/fuzz $(FUZZTIME)

## bench: every benchmark program under hack/bench, against the test environment.
## Each prints a table and one JSON line per figure (value, baseline, ratio,
## target, met); the binaries it measures are built first (make build).
## BENCH=scan runs one.
BENCH ?= admission apiserver build scan pipeline startup verify webhooks
bench: build testenv-up
	@for b in $(BENCH); do echo "==> hack/bench/$$b"; \
	  case $$b in build|scan|pipeline|startup|verify) args="-gantry $(BIN)/gantry";; *) args="";; esac; \
	  $(GO) run ./hack/bench/$$b $$args || exit 1; done

clean:
	rm -rf $(BIN)
