"""The one file of a ``multipart/form-data`` upload, read only once the caller is known.

FastAPI reads a body declared with ``File()`` before it runs any dependency, the key check
included, and Starlette spools every part to disk; a client with no key could make the server
take in a whole body before its 401, and a body cut off by the size cap became FastAPI's 400
"There was an error parsing the body". So the upload route declares no body: it authenticates,
then streams the body through python-multipart here, keeps only the file part in memory, and
stops at the first byte past the cap with a 413. Other parts are read and dropped."""

from __future__ import annotations

from fastapi import Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from qwenedit.errors import InvalidRequest, RequestTooLarge

MAX_PARTS = 8
MAX_PART_HEADERS = 8
MAX_PART_HEADER_BYTES = 4096


class _FilePart:
    """Parser callbacks that collect the part named ``field`` and nothing else."""

    def __init__(self, field: str, max_bytes: int) -> None:
        self._field = field.encode()
        self._max_bytes = max_bytes
        self._parts = 0
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._collecting = False
        self.data: bytearray | None = None
        self.complete = False

    def on_part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise InvalidRequest(f"The form has more than {MAX_PARTS} parts")
        self._disposition = b""

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        kind, options = parse_options_header(self._disposition)
        self._collecting = kind == b"form-data" and options.get(b"name") == self._field
        if self._collecting:
            if self.data is not None:
                raise InvalidRequest("Send one file per upload", param=self._field.decode())
            self.data = bytearray()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._collecting or self.data is None:
            return
        self.data += data[start:end]
        if len(self.data) > self._max_bytes:
            raise RequestTooLarge(
                f"The file is larger than {self._max_bytes} bytes", param=self._field.decode()
            )

    def on_part_end(self) -> None:
        if self._collecting:
            self.complete = True
        self._collecting = False


async def read_upload(request: Request, *, field: str, max_bytes: int) -> bytes:
    """The bytes of the form field ``field``; ``InvalidRequest`` for a body that is not a
    well-formed form with that field, ``RequestTooLarge`` as soon as it passes ``max_bytes``."""
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise InvalidRequest(
            f"Send the image as multipart/form-data in a field named {field!r}", param=field
        )
    part = _FilePart(field, max_bytes)
    callbacks = {
        name: getattr(part, name)
        for name in (
            "on_part_begin",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
            "on_part_data",
            "on_part_end",
        )
    }
    try:
        parser = MultipartParser(
            boundary,
            callbacks,  # type: ignore[arg-type]
            max_header_count=MAX_PART_HEADERS,
            max_header_size=MAX_PART_HEADER_BYTES,
        )
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise InvalidRequest("The multipart body is malformed", param=field) from exc
    if part.data is None:
        raise InvalidRequest(f"The form has no field named {field!r}", param=field)
    if not part.complete:
        raise InvalidRequest("The multipart body ends inside the file", param=field)
    return bytes(part.data)
