"""GraphiQL on `GET /graphql`, from the gateway's own copy of its files when it has one.

`scripts/fetch-graphiql.sh` (run by `make install`) puts them in `static/`, so the page works
on a machine without internet access; without them the browser loads the same versions from
unpkg.com.
"""

import html
import json
from pathlib import Path
from typing import Any

from ariadne.explorer.explorer import Explorer
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
ASSETS_PATH = "/graphql/assets"
# the page's name for each file: (file in static/, the same file on the CDN)
FILES = {
    "react": ("react.production.min.js", "react@18.3.1/umd/react.production.min.js"),
    "react_dom": (
        "react-dom.production.min.js",
        "react-dom@18.3.1/umd/react-dom.production.min.js",
    ),
    "graphiql_js": ("graphiql.min.js", "graphiql@3.9.0/graphiql.min.js"),
    "graphiql_css": ("graphiql.min.css", "graphiql@3.9.0/graphiql.min.css"),
}
DEFAULT_QUERY = """# Send your token in Headers below: {"Authorization": "Bearer <accessToken>"}
# Run with Ctrl-Enter. You see the fields your permissions allow.
{
  __typename
}
"""
PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title}</title>
  <link rel="stylesheet" href="{graphiql_css}">
  <style>body {{ margin: 0; height: 100vh; }} #graphiql {{ height: 100vh; }}</style>
</head>
<body>
  <div id="graphiql">Loading GraphiQL…</div>
  <script src="{react}"></script>
  <script src="{react_dom}"></script>
  <script src="{graphiql_js}"></script>
  <script>
    const here = window.location;
    const socket = (here.protocol === "https:" ? "wss://" : "ws://") + here.host;
    const fetcher = GraphiQL.createFetcher({{
      url: here.pathname, subscriptionUrl: socket + here.pathname,
    }});
    ReactDOM.createRoot(document.getElementById("graphiql")).render(
      React.createElement(GraphiQL, {{
        fetcher, defaultQuery: {default_query}, defaultEditorToolsVisibility: "headers",
      }})
    );
  </script>
</body>
</html>
"""


def asset_urls() -> dict[str, str]:
    local = all((STATIC / file).is_file() for file, _ in FILES.values())
    return {
        name: f"{ASSETS_PATH}/{file}" if local else f"https://unpkg.com/{cdn}"
        for name, (file, cdn) in FILES.items()
    }


class GraphiQL(Explorer):
    def __init__(self, title: str) -> None:
        self.page = PAGE.format(
            title=html.escape(title),
            default_query=json.dumps(DEFAULT_QUERY).replace("<", "\\u003c"),
            **asset_urls(),
        )

    def html(self, request: Any) -> str:
        return self.page


def assets() -> StaticFiles:
    return StaticFiles(directory=STATIC, check_dir=False)
