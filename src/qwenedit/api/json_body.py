"""The JSON body of a request, read whatever the Content-Type says (clients like ``curl -d``
omit it), and refused with a 400 for anything Python's parser cannot take calmly.

``json.loads`` raises more than ``JSONDecodeError``: ``RecursionError`` for deep nesting,
``ValueError`` for an integer past Python's digit limit (4,300), ``UnicodeDecodeError`` for
bytes that are not UTF-8. Each is the client's mistake. A body that parses but nests deeper than
``MAX_DEPTH`` is refused as well: the code that handles it afterwards (hashing for idempotency,
storing) must never meet a structure deep enough to exhaust the stack."""

from __future__ import annotations

import json

from fastapi import Request

from qwenedit.errors import InvalidRequest

MAX_DEPTH = 32
"""Arrays and objects inside each other; the create body needs 2."""


async def read_json(request: Request) -> object:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except RecursionError as exc:
        raise InvalidRequest(f"The body is nested deeper than {MAX_DEPTH} levels") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"The body is not valid JSON: {exc.__class__.__name__}") from exc
    except ValueError as exc:
        raise InvalidRequest("The body holds a number too long to read") from exc
    if _depth(body) > MAX_DEPTH:
        raise InvalidRequest(f"The body is nested deeper than {MAX_DEPTH} levels")
    return body


def _depth(value: object) -> int:
    """How deeply arrays and objects nest in ``value``, walked without recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: list[object] = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest
