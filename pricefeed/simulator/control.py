"""Live control requests a client sends over its WebSocket, validated like Binance.

`{"method":"SUBSCRIBE","params":[...],"id":1}` and UNSUBSCRIBE,
LIST_SUBSCRIPTIONS, SET_PROPERTY/GET_PROPERTY (`combined`). A request that
fails validation becomes a `ControlError` carrying Binance's error code:
0 unknown property, 1 invalid value type, 2 invalid request, 3 invalid JSON.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .streams import encode_json, is_valid_stream_name

METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
PROPERTIES = ("combined",)
_FIELDS = ("method", "params", "id")
_STRING_ID = re.compile(r"^[A-Za-z0-9_-]{1,36}$")
RequestId = int | str | None

UNKNOWN_PROPERTY = 0
INVALID_VALUE_TYPE = 1
INVALID_REQUEST = 2
INVALID_JSON = 3


@dataclass(frozen=True)
class ControlRequest:
    method: str
    params: list[Any]
    id: RequestId


@dataclass(frozen=True)
class ControlError:
    code: int
    msg: str
    id: RequestId = None

    def text(self, nested: bool = False) -> str:
        """The documented flat shape, or the nested one seen on the live service."""
        if nested:
            return encode_json({"error": {"code": self.code, "msg": self.msg}, "id": self.id})
        return encode_json({"code": self.code, "msg": self.msg, "id": self.id})


def result_text(result: Any, request_id: RequestId) -> str:
    """The success reply, e.g. `{"result":null,"id":1}`."""
    return encode_json({"result": result, "id": request_id})


def _valid_id(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -2**63 <= value < 2**63
    return isinstance(value, str) and bool(_STRING_ID.match(value))


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "floating point", str: "string",
            list: "sequence", dict: "map", type(None): "null"}.get(type(value), "value")


def parse_request(text: str | bytes) -> ControlRequest | ControlError:
    """Validate one incoming text frame."""
    try:
        message = json.loads(text)
    except ValueError as exc:
        line, column = getattr(exc, "lineno", 1), getattr(exc, "colno", 1)
        return ControlError(INVALID_JSON, f"Invalid JSON: expected value at line {line} column {column}")
    if not isinstance(message, dict):
        return ControlError(INVALID_REQUEST,
                            f"Invalid request: invalid type: {_type_name(message)}, expected a map")
    request_id = message.get("id")
    if not _valid_id(request_id):
        return ControlError(INVALID_REQUEST, "Invalid request: request ID must be an unsigned integer")
    for key in message:
        if key not in _FIELDS:
            return ControlError(INVALID_REQUEST, f"Invalid request: unknown field `{key}`, "
                                "expected one of `method`, `params`, `id`", request_id)
    method = message.get("method")
    if method is None:
        return ControlError(INVALID_REQUEST, "Invalid request: missing field `method`", request_id)
    if method not in METHODS:
        return ControlError(INVALID_REQUEST, f"Invalid request: unknown variant `{method}`, "
                            f"expected one of {', '.join(f'`{m}`' for m in METHODS)}", request_id)
    params = message.get("params", [])
    if not isinstance(params, list):
        return ControlError(INVALID_REQUEST, f"Invalid request: invalid type: {_type_name(params)}, "
                            "expected a sequence", request_id)
    error = _check_params(method, params, request_id)
    return error or ControlRequest(method, params, request_id)


def _check_params(method: str, params: list[Any], request_id: RequestId) -> ControlError | None:
    if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
        if not params:
            return ControlError(INVALID_REQUEST, "Invalid request: no streams given", request_id)
        for stream in params:
            if not isinstance(stream, str):
                return ControlError(INVALID_REQUEST, f"Invalid request: invalid type: "
                                    f"{_type_name(stream)}, expected a string", request_id)
            if not is_valid_stream_name(stream):
                return ControlError(INVALID_REQUEST, f"Invalid request: invalid stream name "
                                    f"`{stream}`", request_id)
    elif method in ("SET_PROPERTY", "GET_PROPERTY"):
        expected = 2 if method == "SET_PROPERTY" else 1
        if len(params) != expected:
            return ControlError(INVALID_REQUEST, f"Invalid request: {method} takes {expected} "
                                "parameter(s)", request_id)
        if not isinstance(params[0], str):
            return ControlError(INVALID_REQUEST, "Invalid request: property name must be a string",
                                request_id)
        if params[0] not in PROPERTIES:
            return ControlError(UNKNOWN_PROPERTY, "Unknown property", request_id)
        if method == "SET_PROPERTY" and not isinstance(params[1], bool):
            return ControlError(INVALID_VALUE_TYPE, "Invalid value type: expected Boolean", request_id)
    return None
