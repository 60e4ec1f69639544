"""A ``multipart/form-data`` upload read as it arrives, nothing spooled.

FastAPI parses a form (and spools its files to disk) before any dependency runs, so an
upload route declaring ``File``/``Form`` parameters would take a stranger's whole body
before asking for a key. ``/v1/files`` declares none: it authenticates and checks the
declared size first, then reads the form here: its small fields (bounded in number and
size), the one file's name, then the file's content piece by piece as the body arrives
(``file_pieces``), so the content goes straight into the database. Fields may come before
or after the file; those after it are read once its content has been consumed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from gateway.errors import InvalidRequestError

MAX_FIELDS = 16  # form fields besides the file
MAX_FIELD_BYTES = 1024  # each field's value


def _boundary(content_type: str) -> bytes:
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise InvalidRequestError("an upload is a multipart/form-data body with a file part",
                                  param="file")
    return boundary


class UploadForm:
    """One upload's form; ``file_field`` names its single file part."""

    def __init__(self, content_type: str, body: AsyncIterator[bytes],
                 file_field: str = "file") -> None:
        self._body, self._file_field = body, file_field
        self._parser = MultipartParser(_boundary(content_type), {
            "on_part_begin": self._part_begin, "on_header_field": self._header_field,
            "on_header_value": self._header_value, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished, "on_part_data": self._part_data,
            "on_part_end": self._part_end})
        self.fields: dict[str, str] = {}
        self.filename: str | None = None  # set once the file part's headers are read
        self.file_done = False
        self._pieces: deque[bytes] = deque()
        self._header = [b"", b""]  # the header being read: name, value
        self._disposition = b""
        self._name: str | None = None  # the current part's field name
        self._in_file = False
        self._value = bytearray()
        self._ended = False

    async def until_file(self) -> str:
        """Read the fields before the file, up to its content; returns its file name."""
        while self.filename is None:
            if not await self._feed():
                raise InvalidRequestError("the upload has no file part", param=self._file_field)
        return self.filename

    async def file_pieces(self) -> AsyncIterator[bytes]:
        """The file's content as the body brings it, then the rest of the form is read."""
        await self.until_file()
        while self._pieces or not self.file_done:
            while self._pieces:
                yield self._pieces.popleft()
            if not self.file_done and not await self._feed():
                raise InvalidRequestError("the upload ended inside its file",
                                          param=self._file_field)
        while await self._feed():
            pass

    async def _feed(self) -> bool:
        """Parse the body's next piece (False: the body has ended)."""
        if self._ended:
            return False
        try:
            chunk = await anext(self._body, None)
            if chunk is None:
                self._ended = True
                self._parser.finalize()
                return False
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise InvalidRequestError("the upload is not a well-formed multipart form",
                                      param=self._file_field) from exc
        return True

    def _part_begin(self) -> None:
        self._disposition, self._name, self._in_file = b"", None, False
        self._value.clear()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header[0] += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._header[1] += data[start:end]

    def _header_end(self) -> None:
        if self._header[0].strip().lower() == b"content-disposition":
            self._disposition = self._header[1]
        self._header = [b"", b""]

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = _text(options.get(b"name", b""), "a form field's name")
        if not name:
            raise InvalidRequestError("a form part has no name", param=self._file_field)
        self._name = name
        if name == self._file_field:
            if self.filename is not None:
                raise InvalidRequestError("one file per upload", param=self._file_field)
            self._in_file = True
            self.filename = _text(options.get(b"filename", b""), "the file name") or "input.jsonl"
        elif b"filename" in options:
            raise InvalidRequestError(f"unexpected file field {name!r}", param=name)
        elif len(self.fields) >= MAX_FIELDS:
            raise InvalidRequestError(f"at most {MAX_FIELDS} form fields", param=name)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self._pieces.append(bytes(data[start:end]))
            return
        self._value += data[start:end]
        if len(self._value) > MAX_FIELD_BYTES:
            raise InvalidRequestError(f"form fields are limited to {MAX_FIELD_BYTES} bytes",
                                      param=self._name)

    def _part_end(self) -> None:
        if self._in_file:
            self.file_done, self._in_file = True, False
        elif self._name is not None:
            self.fields[self._name] = _text(bytes(self._value), f"field {self._name!r}")


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequestError(f"{what} is not UTF-8") from exc
