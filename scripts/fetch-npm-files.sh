#!/usr/bin/env bash
# Browser files the gateway serves itself (GraphiQL, Swagger UI), so that its pages work without
# internet access, and the AsyncAPI specification's JSON Schema the tests check documents with:
# taken from the npm registry at the pinned versions `make install` names.
# usage: fetch-npm-files.sh TARGET-DIR [@SCOPE/]PACKAGE@VERSION/PATH-IN-PACKAGE...
set -eu
target=$1
shift
command -v npm >/dev/null || {
  echo "npm not found: $target stays empty, and its page says which files it misses" >&2
  exit 0
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# the package of a spec: its first path segment, or its first two for a scoped (@scope/) one
package_of() { case $1 in @*) echo "$1" | cut -d/ -f1-2 ;; *) echo "$1" | cut -d/ -f1 ;; esac; }
packages=$(for spec in "$@"; do package_of "$spec"; done | sort -u)
# shellcheck disable=SC2086 # one word per package
(cd "$work" && npm pack --silent $packages >/dev/null)
mkdir "$work/files"
for package in $packages; do
  tarball=${package#@} && tarball=${tarball//\//-} && tarball=${tarball/@/-}.tgz
  mkdir -p "$work/$package" && tar xzf "$work/$tarball" -C "$work/$package"
done
for spec in "$@"; do
  package=$(package_of "$spec")
  cp "$work/$package/package/${spec#"$package"/}" "$work/files/"
done
mkdir -p "$target"
cp "$work"/files/* "$target/"
