#!/usr/bin/env bash
# Browser files the gateway serves itself (GraphiQL, Swagger UI), so that its pages work without
# internet access: taken from the npm registry at the pinned versions `make install` names.
# usage: fetch-npm-files.sh TARGET-DIR PACKAGE@VERSION/PATH-IN-PACKAGE...
set -eu
target=$1
shift
command -v npm >/dev/null || {
  echo "npm not found: $target stays empty, and its page says which files it misses" >&2
  exit 0
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
packages=$(printf '%s\n' "$@" | cut -d/ -f1 | sort -u)
# shellcheck disable=SC2086 # one word per package
(cd "$work" && npm pack --silent $packages >/dev/null)
mkdir "$work/files"
for package in $packages; do
  mkdir "$work/$package" && tar xzf "$work/${package/@/-}.tgz" -C "$work/$package"
done
for spec in "$@"; do
  cp "$work/${spec%%/*}/package/${spec#*/}" "$work/files/"
done
mkdir -p "$target"
cp "$work"/files/* "$target/"
