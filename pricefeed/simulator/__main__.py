"""`python -m pricefeed.simulator`: see options.py for the command line."""
import warnings

from gevent import monkey

# `-m` imports the parent package `pricefeed` (Flask, redis, ssl) before this
# line can run, so gevent warns that patching comes late. The simulator itself
# uses gevent's own primitives (server, greenlets, events, locks) and needs no
# patched module to be correct; the patch is for whatever else it imports.
warnings.filterwarnings("ignore", category=monkey.MonkeyPatchWarning)
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
