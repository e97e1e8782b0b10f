"""Option types the commands share."""

from __future__ import annotations

import click

from ..errors import InvalidInput
from ..job import MAX_PAYLOAD_BYTES, parse_payload


class JsonObject(click.ParamType):
    """A JSON object given inline, as ``@FILE`` (read from that file) or ``-`` (standard input),
    so a payload of any size up to the limit can be passed from a shell. JSON text never starts
    with ``@`` or is ``-``, so neither form is ambiguous."""

    name = "json"

    def convert(self, value, param, ctx) -> dict:
        if isinstance(value, dict):
            return value
        option = param.opts[0] if param is not None and param.opts else "the value"
        if value == "-":
            text = self._read(click.get_binary_stream("stdin"), f"{option} - (standard input)")
        elif value.startswith("@"):
            path = value[1:]
            try:
                with open(path, "rb") as handle:
                    text = self._read(handle, f"{option} {value}")
            except OSError as exc:
                raise InvalidInput(f"{option} {value}: cannot read {path!r}: {exc.strerror or exc}") from None
        else:
            text = value
        try:
            return parse_payload(text)
        except InvalidInput as exc:
            raise InvalidInput(f"{option}: {exc}") from None

    @staticmethod
    def _read(stream, where: str) -> str:
        data = stream.read(MAX_PAYLOAD_BYTES + 1)
        if len(data) > MAX_PAYLOAD_BYTES:
            raise InvalidInput(f"{where}: larger than the {MAX_PAYLOAD_BYTES // 1024} KiB limit of a payload")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(f"{where}: not UTF-8 text") from None


JSON_OBJECT = JsonObject()
