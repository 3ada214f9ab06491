"""The files of the gateway's browser pages (GraphiQL, Swagger UI), served by the gateway itself.

`make install` fetches them from the npm registry at pinned versions into each page's
gitignored `static/` folder (`scripts/fetch-npm-files.sh`), so the pages work without internet
access and name no outside host. A page whose files are missing says how to get them instead
of rendering blank.
"""

import html
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

MISSING_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{name}: files missing</title></head>
<body>
  <h1>{name} is not installed</h1>
  <p>The gateway serves {name}'s files itself, and these are missing from
  <code>{directory}</code>: {files}.</p>
  <p>Run <code>make install</code> in the Banyan checkout (it fetches them from the npm
  registry), then reload this page. For a container image, run it before
  <code>docker build</code>.</p>
</body>
</html>
"""


@dataclass(frozen=True)
class BrowserAssets:
    name: str  # the page's library, as the missing-files page names it
    directory: Path
    url_path: str  # where the gateway serves `directory`
    files: tuple[str, ...]  # those the page loads

    def url(self, file: str) -> str:
        return f"{self.url_path}/{file}"

    def mount(self, app: FastAPI) -> None:
        app.mount(self.url_path, StaticFiles(directory=self.directory, check_dir=False))

    def html(self, page: str) -> str:
        """`page` when every file it loads is here (checked per request), else how to get them."""
        missing = [file for file in self.files if not (self.directory / file).is_file()]
        if not missing:
            return page
        return MISSING_PAGE.format(
            name=html.escape(self.name),
            directory=html.escape(str(self.directory)),
            files=", ".join(f"<code>{html.escape(file)}</code>" for file in missing),
        )
