#!/usr/bin/env bash
# Idempotent: Debian's Chromium and ChromeDriver for the dashboard's browser test
# (tests/gateway/http/test_dashboard_browser.py drives them with Selenium).
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "browser.sh: install chromium and chromium-driver (needs root and apt-get)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium chromium-driver >/dev/null
chromium --version
