"""multipart/form-data parsed in memory (Starlette's parser spools large files to disk, and
nothing a user sends may touch the disk). The body is already size-checked by the caller."""

from __future__ import annotations

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from lisa.errors import LisaError

MAX_PARTS = 16


def parse_multipart(body: bytes, content_type: str) -> dict[str, bytes]:
    """Field name -> raw bytes of its value (files and plain fields alike; the first wins)."""
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise LisaError("multipart/form-data without a boundary in its Content-Type")
    parts: list[tuple[dict[bytes, bytes], bytearray]] = []
    header: dict[str, bytearray] = {"field": bytearray(), "value": bytearray()}

    def begin() -> None:
        if len(parts) >= MAX_PARTS:
            raise LisaError(f"more than {MAX_PARTS} form fields")
        parts.append(({}, bytearray()))

    def end_header() -> None:
        parts[-1][0][bytes(header["field"]).lower()] = bytes(header["value"])
        header["field"].clear()
        header["value"].clear()

    callbacks = {
        "on_part_begin": begin,
        "on_part_data": lambda data, start, end: parts[-1][1].extend(data[start:end]),
        "on_header_field": lambda data, start, end: header["field"].extend(data[start:end]),
        "on_header_value": lambda data, start, end: header["value"].extend(data[start:end]),
        "on_header_end": end_header,
    }
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except FormParserError as error:
        raise LisaError(f"malformed multipart body: {error}") from None
    fields: dict[str, bytes] = {}
    for headers, data in parts:
        _, disposition = parse_options_header(headers.get(b"content-disposition", b""))
        name = disposition.get(b"name")
        if name is None:
            raise LisaError("a multipart part has no name in its Content-Disposition")
        fields.setdefault(name.decode("utf-8", "replace"), bytes(data))
    return fields
