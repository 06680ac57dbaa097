"""React 19 as ES modules for the browser tests, built from the npm registry's packages.

React's npm packages are CommonJS only. ./test.sh installs react, react-dom and esbuild (whose
npm package carries its prebuilt binary) into tests/browser/node_modules; this bundles React and
react-dom/client into one ES module in the development build (StrictMode double-mounts only
there), plus a small module that re-exports react-dom/client from it, so both bare names of the
page's import map resolve to one React instance.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / "tests" / "browser" / "node_modules"
ESBUILD = NODE_MODULES / ".bin" / "esbuild"

# Names are read from the installed packages, so the bundle exports exactly what this React has.
_ENTRY_WRITER = r"""
const React = require("react"), Client = require("react-dom/client");
const ok = (n) => /^[A-Za-z_$][\w$]*$/.test(n) && n !== "default";
const own = Object.keys(React).filter(ok);
const client = Object.keys(Client).filter((n) => ok(n) && !own.includes(n));
process.stdout.write([
  'import React from "react";', 'import ReactDOMClient from "react-dom/client";',
  "export default React;",
  `export const {${own.join(", ")}} = React;`,
  `export const {${client.join(", ")}} = ReactDOMClient;`,
  `export const __reactDomClientNames = ${JSON.stringify(client)};`, ""].join("\n"));
"""


def build_react_vendor(out_dir: Path) -> Path:
    """Write react.js and react-dom-client.js into `out_dir`; return it."""
    if not ESBUILD.exists():
        raise RuntimeError(f"{ESBUILD} is missing: ./test.sh installs tests/browser/package.json with npm ci")
    out_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, NODE_PATH=str(NODE_MODULES))
    entry = subprocess.run(["node", "-e", _ENTRY_WRITER], capture_output=True, text=True, check=True,
                           env=env, cwd=NODE_MODULES.parent).stdout
    (out_dir / "react-entry.js").write_text(entry)
    subprocess.run([str(ESBUILD), str(out_dir / "react-entry.js"), "--bundle", "--format=esm",
                    '--define:process.env.NODE_ENV="development"', f"--outfile={out_dir / 'react.js'}",
                    "--log-level=warning"], check=True, env=env, cwd=NODE_MODULES.parent, timeout=120)
    client_names = ["createRoot", "hydrateRoot"]
    (out_dir / "react-dom-client.js").write_text(
        f"import {{{', '.join(client_names)}}} from \"./react.js\";\n"
        f"export {{{', '.join(client_names)}}};\n"
        f"export default {{{', '.join(client_names)}}};\n")
    return out_dir
