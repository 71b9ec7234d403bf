# Fleet: one command runs the fleet (make run), one runs the tests (make test).
# Every service folder: the same ones the workspace (services/*) installs and the registry lists
# (docs/services.md), so a new service needs no line here.
SERVICES := $(sort $(patsubst services/%/pyproject.toml,%,$(wildcard services/*/pyproject.toml)))
UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
PY := .venv/bin/python
export UV_LINK_MODE ?= copy
FLEET_IMAGE_TAG ?= dev

.PHONY: setup run up down status test test-unit lint typecheck bench clean deps-system images \
	registry

## setup: install uv if missing, then every package (the services, fleet-shared, and the
## development tools of tools/: the local fleet, the gateway renderer, the pytest plugin) and
## every dev tool from the lock file
setup: .venv/.synced

.venv/.synced: pyproject.toml uv.lock shared-lib/pyproject.toml tools/pyproject.toml $(foreach s,$(SERVICES),services/$(s)/pyproject.toml)
	@command -v uv >/dev/null 2>&1 || test -x $(UV) || python3 -m pip install --quiet --user uv
	$(UV) sync --frozen --all-packages
	@touch $@

## deps-system: nginx for the gateway, envsubst and busybox for its container entrypoint tests,
## docker and debootstrap for the image tests (tests/containers), wrk for benchmarks,
## Chromium and its chromedriver for the API docs' browser test (tests/e2e/test_docs_browser.py)
## (PostgreSQL and RabbitMQ are expected to run: fleetctl says how to start them)
deps-system:
	@missing=""; \
	command -v nginx >/dev/null 2>&1 || missing="$$missing nginx"; \
	command -v envsubst >/dev/null 2>&1 || missing="$$missing gettext-base"; \
	command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v busybox >/dev/null 2>&1 || missing="$$missing busybox"; \
	command -v dockerd >/dev/null 2>&1 || missing="$$missing docker.io"; \
	command -v debootstrap >/dev/null 2>&1 || missing="$$missing debootstrap"; \
	command -v pgbouncer >/dev/null 2>&1 || missing="$$missing pgbouncer"; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	test -x /usr/bin/chromedriver || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && apt-get install -y -qq $$missing; \
		else echo "missing:$$missing (install with: apt-get install -y$$missing)"; exit 1; fi; \
	fi

## registry: after adding or removing a service folder: lock and install the workspace again,
## then rewrite every fleet-wide list of services (compose, kustomize, the charts, the gateway's
## routes, Prometheus, .env.example, the image build) from the installed services
## (docs/services.md); `make test` fails while one is stale
registry:
	$(UV) lock
	@$(MAKE) --no-print-directory setup
	.venv/bin/fleetctl registry sync

## service: a new service, `make service NAME=<name>` (fleetctl new-service; docs/services.md,
## "Adding a service"): its package, tests, docs, image, chart and kustomize entries, then
## locked, installed and listed in the registry
.PHONY: service
service: setup
	@test -n "$(NAME)" || { echo "usage: make service NAME=<name>" >&2; exit 2; }
	.venv/bin/fleetctl new-service $(NAME)

## images: every service's image and the gateway's (fleet/<name>:$(FLEET_IMAGE_TAG)) on bases
## made from Debian packages, as tests/containers builds them; docs/images.md describes them and
## the release build
images:
	FLEET_IMAGE_TAG=$(FLEET_IMAGE_TAG) deploy/images/build.sh

## run: the whole fleet in the foreground (Ctrl-C stops it)
run: setup deps-system
	.venv/bin/fleetctl up --foreground

## up / down / status: the same fleet in the background
up: setup deps-system
	.venv/bin/fleetctl up

down: setup
	.venv/bin/fleetctl down

status: setup
	.venv/bin/fleetctl status

## test: lint, type checks and every test (unit, integration, e2e, deploy)
test: setup deps-system lint typecheck
	.venv/bin/pytest shared-lib/tests tools/tests $(foreach s,$(SERVICES),services/$(s)/tests) tests

test-unit: setup
	.venv/bin/pytest -q shared-lib/tests/unit $(foreach s,$(SERVICES),services/$(s)/tests/unit)

lint: setup
	.venv/bin/ruff check .

typecheck: setup
	.venv/bin/mypy shared-lib/src tools/src $(foreach s,$(SERVICES),services/$(s)/src) benchmarks

## bench: throughput figures, each against a baseline measured in the same run
bench: setup deps-system
	$(PY) -m benchmarks

clean:
	rm -rf .venv .fleet .pytest_cache .mypy_cache .ruff_cache
