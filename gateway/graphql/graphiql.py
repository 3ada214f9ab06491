"""GraphiQL on `GET /graphql`, from the gateway's own copy of its files (`browser_assets`)."""

import html
import json
from pathlib import Path
from typing import Any

from ariadne.explorer.explorer import Explorer

from gateway.browser_assets import BrowserAssets

# the page's name for each file it loads
FILES = {
    "react": "react.production.min.js",
    "react_dom": "react-dom.production.min.js",
    "graphiql_js": "graphiql.min.js",
    "graphiql_css": "graphiql.min.css",
}
ASSETS = BrowserAssets(
    "GraphiQL", Path(__file__).parent / "static", "/graphql/assets", tuple(FILES.values())
)
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


class GraphiQL(Explorer):
    def __init__(self, title: str) -> None:
        self.page = PAGE.format(
            title=html.escape(title),
            default_query=json.dumps(DEFAULT_QUERY).replace("<", "\\u003c"),
            **{name: ASSETS.url(file) for name, file in FILES.items()},
        )

    def html(self, request: Any) -> str:
        return ASSETS.html(self.page)
