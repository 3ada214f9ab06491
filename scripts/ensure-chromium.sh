#!/usr/bin/env bash
# The GraphiQL test drives a headless Chromium; install Debian's when it is missing and we can.
set -u
command -v chromium >/dev/null && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "chromium is not installed; installing Debian's package" >&2
  apt-get install -y -q chromium >/dev/null && exit 0
fi
echo "error: the tests need Chromium: install Debian's package 'chromium' (apt-get install chromium)" >&2
exit 1
