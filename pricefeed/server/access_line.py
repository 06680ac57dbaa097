"""The access-log atoms of a request the worker's door answered itself (accept.py): the same
atoms gunicorn's Logger.atoms gives a request it served, built from the raw head, so that
the line has the host's access_log_format whichever path answered.

Standard library only: the master imports this with the worker class.
"""
from __future__ import annotations

import datetime
import os
from typing import Any

REFUSED_ATOM = "{pricefeed.refused}e"      # web/streams/door.py REFUSED_KEY, as an environ atom


def door_refusal_atoms(logger: Any, head: bytes, peer: Any, refusal: Any, seconds: float) -> dict:
    request_line, _, header_block = head.partition(b"\r\n")
    method, target, protocol = (part.decode("latin-1") for part in request_line.split(b" ", 2))
    path, _, query = target.partition("?")
    headers = {}
    for line in header_block.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if colon:
            headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
    elapsed = datetime.timedelta(seconds=seconds)
    status_line, _, rest = refusal.response.partition(b"\r\n")
    body = refusal.response.partition(b"\r\n\r\n")[2]
    atoms = {
        "h": peer[0] if isinstance(peer, tuple) and peer else "-",
        "l": "-", "u": "-", "t": logger.now(),
        "r": f"{method} {target} {protocol}",
        "s": str(refusal.status), "m": method, "U": path, "q": query, "H": protocol,
        "b": str(len(body)), "B": len(body),
        "f": headers.get("referer", "-"), "a": headers.get("user-agent", "-"),
        "T": elapsed.seconds, "D": elapsed.seconds * 1_000_000 + elapsed.microseconds,
        "M": elapsed.seconds * 1000 + elapsed.microseconds // 1000,
        "L": "%d.%06d" % (elapsed.seconds, elapsed.microseconds),
        "p": f"<{os.getpid()}>",
        REFUSED_ATOM: refusal.reason,
    }
    atoms.update({"{%s}i" % name: value for name, value in headers.items()})
    for line in rest.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if colon:
            atoms["{%s}o" % name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
    return atoms
