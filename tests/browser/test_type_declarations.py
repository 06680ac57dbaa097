"""static/pricefeed.d.ts and react-pricefeed.d.ts type-check a TypeScript page (tsc from the npm registry)."""
from __future__ import annotations

import subprocess

from tests.support.react_vendor import NODE_MODULES


def test_the_type_declarations_accept_real_usage_and_reject_a_number_price():
    tsc = NODE_MODULES / ".bin" / "tsc"
    assert tsc.exists(), f"{tsc} is missing: ./test.sh installs tests/browser/package.json with npm ci"
    result = subprocess.run([str(tsc), "-p", str(NODE_MODULES.parent / "types" / "tsconfig.json")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
