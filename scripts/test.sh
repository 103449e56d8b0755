#!/usr/bin/env bash
# Set up (first run only) and run the whole test suite: bash scripts/test.sh [pytest options]
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
# The browser tests drive Debian's Chromium (Playwright cannot download its own browser offline).
if [ ! -x /usr/bin/chromium ]; then
  echo "digitlab: installing Debian's chromium for the browser tests" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium
fi
exec .venv/bin/python -m pytest tests "$@"
