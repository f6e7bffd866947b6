#!/usr/bin/env bash
# Installs Debian's chromium for the browser tests (tests/serve/test_ui_browser.py).
# Idempotent and never fatal: without chromium those tests skip and say why, so a
# machine without apt, root or the package still runs the rest of the suite.
# Playwright drives this system browser; `playwright install` (a download from outside
# the package registries) is never used.
set -u
CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if [ "${OCELLI_SKIP_BROWSER_INSTALL:-}" = 1 ]; then
    echo "install-browser: OCELLI_SKIP_BROWSER_INSTALL=1; browser tests will skip"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-browser: no apt-get here; install chromium at $CHROMIUM or browser tests skip"
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install-browser: not root and no password-less sudo; browser tests will skip"
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
echo "install-browser: installing Debian's chromium (apt-get, once)"
if ! { $SUDO apt-get update -qq </dev/null && \
       $SUDO apt-get install -y -qq --no-install-recommends chromium </dev/null; } >/tmp/ocelli-install-browser.log 2>&1; then
    echo "install-browser: apt-get failed (log: /tmp/ocelli-install-browser.log); browser tests will skip"
fi
exit 0
