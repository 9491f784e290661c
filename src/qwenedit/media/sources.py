"""Where an input image comes from, and what a URL's text alone is enough to refuse.

An entry of ``image_urls`` is one of three kinds: an inline ``data:`` URI, one of this
server's uploads, or a remote http(s) URL. The service classifies it at create (a refusal is a
400) and the worker classifies it again when it fetches (a refusal fails the task), so the
two can never disagree. Only what needs no DNS is decided here: a literal internal address or
``localhost``. Names are resolved and checked by the guarded client when it connects.

What a task stores is not always what the client sent: an inline image is checked and written
to the blob store at create and the task keeps a ``stored:<key>`` reference; an upload is kept
as ``upload:<file id>`` (not a node's URL), so a worker on any machine reads both from shared
storage. Clients cannot send these references: the request accepts only http(s) and data URIs.
"""

from __future__ import annotations

from dataclasses import dataclass

from qwenedit.errors import InputRejected
from qwenedit.media.addresses import Allowance, address_without_dns, is_forbidden
from qwenedit.media.datauri import parse_image_data_uri
from qwenedit.media.hosts import connect_host

INTERNAL_MESSAGE = "the URL points to an internal address, which this server refuses"
FILES_PATH = "/v1/files/"
CONTENT_SUFFIX = "/content"
_DATA_SCHEME = "data:"


@dataclass(frozen=True)
class DataUriSource:
    """An inline image, already decoded from base64 (its content is judged later)."""

    data: bytes


@dataclass(frozen=True)
class UploadSource:
    """An upload of this server, read from the blob store rather than over the network."""

    file_id: str


@dataclass(frozen=True)
class RemoteSource:
    """An http(s) URL whose host is not refused by its text; the guarded client fetches it."""

    url: str


@dataclass(frozen=True)
class StoredSource:
    """An inline image written to the blob store at create, under ``key``."""

    key: str


InputSource = DataUriSource | UploadSource | RemoteSource | StoredSource

_STORED = "stored:"
_UPLOAD = "upload:"


def stored_reference(source: StoredSource | UploadSource) -> str:
    """How a task keeps an input that lives in the blob store."""
    if isinstance(source, StoredSource):
        return _STORED + source.key
    return _UPLOAD + source.file_id


def stored_input_key(task_id: str, index: int) -> str:
    """Where the inline image ``index`` of a task is kept (deleted with the task)."""
    return f"{inputs_prefix(task_id)}{index}"


INPUTS_ROOT = "inputs/"


def inputs_prefix(task_id: str) -> str:
    return f"{INPUTS_ROOT}{task_id}/"


def upload_url(public_url: str, file_id: str) -> str:
    """The URL under which this server hands out the upload ``file_id``."""
    return public_url.rstrip("/") + FILES_PATH + file_id + CONTENT_SUFFIX


def upload_file_id(url: str, public_url: str) -> str | None:
    """The upload ``url`` names when it is one of this server's file URLs, else ``None``."""
    prefix = public_url.rstrip("/") + FILES_PATH
    if not url.startswith(prefix):
        return None
    return url[len(prefix) :].removesuffix(CONTENT_SUFFIX) or None


def classify_input(
    url: str, *, public_url: str, max_bytes: int, allowance: Allowance
) -> InputSource:
    """What one ``image_urls`` entry is. ``InputRejected`` for a malformed or oversized data
    URI, or a remote URL whose host is refused without DNS (see ``refuse_internal_host``).

    Uploads are recognised first: this server's own public URL may well be an internal
    address (a development setup), and an upload is never fetched over the network anyway."""
    if url.startswith(_STORED):
        return StoredSource(url.removeprefix(_STORED))
    if url.startswith(_UPLOAD):
        return UploadSource(url.removeprefix(_UPLOAD))
    file_id = upload_file_id(url, public_url)
    if file_id is not None:
        return UploadSource(file_id)
    if url[: len(_DATA_SCHEME)].lower() == _DATA_SCHEME:
        try:
            return DataUriSource(parse_image_data_uri(url, max_bytes))
        except ValueError as exc:
            raise InputRejected(str(exc)) from exc
    refuse_internal_host(url, allowance)
    return RemoteSource(url)


def refuse_internal_host(url: str, allowance: Allowance) -> None:
    """``InputRejected`` when the URL's host is not valid (``media.hosts``) or is, without any
    DNS lookup, an internal address the ``allowance`` does not cover: a literal address in any
    spelling, or ``localhost``."""
    address = address_without_dns(connect_host(url))
    if address is not None and is_forbidden(address, allowance):
        raise InputRejected(INTERNAL_MESSAGE)
