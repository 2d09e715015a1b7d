# stagepass: the two commands are `make run` and `make test`.
#
#   make run      set up, start LiveKit and S3 if needed, migrate, load demo data, serve
#   make test     set up, then the whole test suite (make test TEST_ARGS="-- accounts")
#   make test-cluster  set up, then the cluster test alone: two app instances and two
#                 LiveKit nodes behind Caddy over HTTPS (make test runs it too)
#   make bench    benchmark a release build against the real services (about 40 minutes);
#                 the report goes to target/bench/report.md and report.json
#   make setup    install and start what the app and its tests need (idempotent)
#   make fmt      format the Rust code
#   make lint     clippy, warnings are errors
#   make schema   regenerate src/db/schema.rs from the migrated database (needs diesel_cli)

SHELL := /bin/bash

TOOLS := $(or $(STAGEPASS_TOOLS),/root/.cache/stagepass)
# The tools scripts/setup installs, and the toolchains of non-login shells.
export PATH := $(TOOLS)/bin:$(HOME)/.cargo/bin:/usr/local/go/bin:$(PATH)

DATABASE_URL ?= postgres://stagepass:stagepass@localhost:5432/stagepass
TEST_ARGS ?=

.PHONY: run test test-cluster bench setup fmt lint schema

run:
	scripts/run

test: setup
	cargo test --locked $(TEST_ARGS)

test-cluster: setup
	cargo test --locked --test app -- cluster::

bench:
	scripts/bench

setup:
	scripts/setup

fmt:
	cargo fmt --all

lint:
	cargo clippy --locked --all-targets -- -D warnings

# print-schema reads the live database, so apply the migrations first. Written to a
# temporary file so that a failure does not leave schema.rs empty.
schema:
	@command -v diesel >/dev/null || { echo "diesel_cli is not installed: cargo install diesel_cli --version 2.3.14 --no-default-features --features postgres --locked" >&2; exit 1; }
	diesel migration run --database-url "$(DATABASE_URL)" --migration-dir migrations
	diesel print-schema --database-url "$(DATABASE_URL)" > src/db/schema.rs.tmp
	mv src/db/schema.rs.tmp src/db/schema.rs
