#!/usr/bin/env bash
# GraphiQL's browser files, served by the gateway itself so that /graphql works without a CDN.
# Taken from the npm registry at pinned versions; without npm the page falls back to unpkg.
set -eu
target=gateway/graphql/static
[ -f "$target/graphiql.min.js" ] && exit 0
command -v npm >/dev/null || { echo "npm not found: GraphiQL will load from unpkg.com" >&2; exit 0; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent graphiql@3.9.0 react@18.3.1 react-dom@18.3.1 >/dev/null)
for package in graphiql-3.9.0 react-18.3.1 react-dom-18.3.1; do
  mkdir "$work/$package" && tar xzf "$work/$package.tgz" -C "$work/$package"
done
mkdir -p "$target"
cp "$work/react-18.3.1/package/umd/react.production.min.js" \
   "$work/react-dom-18.3.1/package/umd/react-dom.production.min.js" \
   "$work/graphiql-3.9.0/package/graphiql.min.css" \
   "$work/graphiql-3.9.0/package/graphiql.min.js" "$target/"
