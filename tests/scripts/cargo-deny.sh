#!/usr/bin/env bash
# Idempotently build and cache cargo-deny from crates.io (`cargo install
# --locked`, no release downloads).
#
# Usage: DENY=$(tests/scripts/cargo-deny.sh | tail -n 1)   # last line: the binary
#        "${DENY}" deny check bans licenses sources     # offline: no advisory DB
#
# Result: ${HOS_CACHE:-$HOME/.cache/hybrid-online-store}/cargo-deny-<CARGO_DENY_VERSION>/bin/cargo-deny
#         When it already exists the script only prints that path.
#
# Env:   HOS_CACHE           cache root (default: $HOME/.cache/hybrid-online-store)
#        CARGO_DENY_VERSION  cargo-deny version (default: 0.20.2)
#        CARGO               cargo binary (default: cargo)
#
# The build runs under `nice` (the machine has two cores and other builds
# run beside it) in a throw-away target dir; it is installed into a temp
# root first and moved into place, so an interrupted build never leaves a
# half-written binary at the cached path. All chatter goes to stderr.
set -euo pipefail

CARGO_DENY_VERSION="${CARGO_DENY_VERSION:-0.20.2}"
CARGO="${CARGO:-cargo}"
CACHE_ROOT="${HOS_CACHE:-${HOME:-/root}/.cache/hybrid-online-store}"
ROOT_DIR="${CACHE_ROOT}/cargo-deny-${CARGO_DENY_VERSION}"
BIN="${ROOT_DIR}/bin/cargo-deny"

log() { echo "cargo-deny: $*" >&2; }

if [[ -x "${BIN}" ]]; then
  echo "${BIN}"
  exit 0
fi

command -v "${CARGO}" >/dev/null || { log "ERROR: ${CARGO} not found"; exit 1; }
mkdir -p "${CACHE_ROOT}"
TMP="$(mktemp -d "${CACHE_ROOT}/cargo-deny-build-XXXXXX")"
trap 'rm -rf "${TMP}"' EXIT
log "building cargo-deny ${CARGO_DENY_VERSION} with $("${CARGO}" --version) into ${ROOT_DIR}"

CARGO_TARGET_DIR="${TMP}/target" nice -n 10 "${CARGO}" install cargo-deny \
  --version "=${CARGO_DENY_VERSION}" --locked --root "${TMP}/root" >&2

[[ -x "${TMP}/root/bin/cargo-deny" ]] || { log "ERROR: no binary after cargo install"; exit 1; }
"${TMP}/root/bin/cargo-deny" --version >&2
rm -rf "${ROOT_DIR}"
mkdir -p "${ROOT_DIR}/bin"
mv "${TMP}/root/bin/cargo-deny" "${BIN}"
echo "${BIN}"
