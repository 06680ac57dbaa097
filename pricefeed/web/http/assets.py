"""Where the dashboard's templates and static files are: inside an installed wheel, or in a checkout.

The project keeps `templates/` and `static/` at its top level; the wheel carries them as
`pricefeed/_assets/templates` and `pricefeed/_assets/static` (pyproject.toml maps them).
An installed copy finds them in the package; a source checkout (and `pip install -e .`,
which imports the package from the checkout) finds them beside it.
"""
from __future__ import annotations

import importlib.resources
from pathlib import Path

ASSET_FOLDERS = ("templates", "static")


def asset_folder(name: str) -> str:
    """The directory holding the dashboard's `templates` or `static` files, as Flask needs it (a path)."""
    if name not in ASSET_FOLDERS:
        raise ValueError(f"no asset folder named {name!r}")
    packaged = importlib.resources.files("pricefeed") / "_assets" / name
    if packaged.is_dir():
        return str(packaged)
    checkout = Path(__file__).resolve().parents[3] / name
    if checkout.is_dir():
        return str(checkout)
    raise FileNotFoundError(f"pricefeed's {name}/ is neither in the package ({packaged}) nor in a checkout "
                            f"({checkout}): reinstall the package")
