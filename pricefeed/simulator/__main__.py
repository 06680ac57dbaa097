"""`python -m pricefeed.simulator`: see options.py for the command line."""
from gevent import monkey

# `-m` imports the parent package first; pricefeed/__init__.py is kept lazy so that
# nothing (Flask, redis, ssl) is imported before this patch.
monkey.patch_all()

import sys  # noqa: E402

from .options import parse_options  # noqa: E402
from .replay import CaptureError  # noqa: E402
from .server import serve  # noqa: E402


def main() -> int:
    options = parse_options()
    try:
        return serve(options)
    except (CaptureError, OSError) as error:
        print(f"simulator: {error}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
