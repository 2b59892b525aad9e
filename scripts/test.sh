#!/usr/bin/env bash
# Install everything the test suite needs, then run it whole (lint and types included).
#
# What it installs: a virtualenv in .venv with the package and its [test] extra (pip), the
# Node OpenTelemetry clients in tests/js/node_modules (npm ci), and, only when no Chromium is
# found, Debian's `chromium` package (apt-get; needs root or passwordless sudo) for the
# dashboard's browser tests. Arguments are passed to pytest (`-m "not slow"` for the fast loop).
set -euo pipefail
cd "$(dirname "$0")/.."

python3.11 -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
pip install -q -e '.[test]'
npm ci --prefix tests/js --no-audit --no-fund --loglevel=error

have_chromium() {
    [ -n "${AETHERMIND_CHROMIUM:-}" ] && [ -x "${AETHERMIND_CHROMIUM}" ] && return 0
    for name in chromium chromium-browser google-chrome google-chrome-stable; do
        command -v "$name" >/dev/null 2>&1 && return 0
    done
    return 1
}

if ! have_chromium; then
    if [ "$(id -u)" -eq 0 ]; then as_root=""
    elif sudo -n true 2>/dev/null; then as_root="sudo -n"
    else
        echo "test.sh: the browser tests need Chromium: install it (Debian: apt-get install chromium)" \
             "or point AETHERMIND_CHROMIUM at a Chromium binary, then run this again" >&2
        exit 1
    fi
    echo "test.sh: installing Debian's chromium for the browser tests" >&2
    $as_root apt-get update -q
    DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -q chromium
fi

status=0
python -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "test.sh: pytest collected no tests: that is a failure" >&2
fi
exit "$status"
