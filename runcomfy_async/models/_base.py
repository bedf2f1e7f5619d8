"""The base of every typed model input, its field checks, and :func:`prepare_inputs`.

A typed input checks itself when it is built (``__post_init__``), so a bad value fails
on the line that wrote it, before any request is sent or money spent. It holds file
fields as the caller gave them (URL, ``data:`` URI, path or bytes); turning local files
into ``data:`` URIs needs file I/O, so that happens in :func:`prepare_inputs`, off the
event loop, and never in the synchronous :meth:`ModelInput.to_inputs`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar

import msgspec

from .._errors import InputValidationError
from ..inputs import MediaRule, check_request_size, describe, encode_media

__all__ = [
    "ModelInput",
    "from_mapping",
    "check_bool",
    "check_choice",
    "check_int_range",
    "check_text",
    "prepare_inputs",
]


class ModelInput(msgspec.Struct, frozen=True):
    """Validated inputs for one RunComfy model; subclasses are frozen and self-checking.

    Attributes:
        model_id: The model these inputs are for, e.g. ``"wan-ai/wan-2-5/image-to-video"``.
        display_name: The model's short name, used in error messages.
        media_rules: Which fields hold files, and the rule each file must meet.
    """

    model_id: ClassVar[str]
    display_name: ClassVar[str]
    media_rules: ClassVar[Mapping[str, MediaRule]] = MappingProxyType({})

    def to_inputs(self) -> dict[str, object]:
        """Return the JSON body the API expects, leaving out optional fields left unset.

        This is synchronous and does no I/O, so file fields must already be URLs or
        ``data:`` URIs (sent as given: their content is only checked by
        ``prepare_inputs``). Local files go through ``await prepare_inputs(...)``, which
        ``Client.submit`` calls for you.

        Returns:
            A new dict of plain JSON values, keyed by the model's input names.

        Raises:
            RuntimeError: A file field holds a local path or bytes.
        """
        payload = self._payload()
        for name in self.media_rules:
            if isinstance(payload.get(name), str | None):
                continue
            raise RuntimeError(
                f"{type(self).__name__}.{name} is a local file, which must be read off the "
                "event loop: use `await prepare_inputs(inputs)` instead of to_inputs()"
            )
        return payload

    def _payload(self) -> dict[str, object]:
        payload: dict[str, object] = {}
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if value is not None:
                payload[name] = value
        return payload

    def __repr__(self) -> str:
        # Files given as bytes or data: URIs would flood logs and tracebacks: shorten them.
        shown = ", ".join(
            f"{name}={describe(getattr(self, name))!r}" for name in self.__struct_fields__
        )
        return f"{type(self).__name__}({shown})"


def from_mapping(cls: type[ModelInput], inputs: Mapping[str, object]) -> ModelInput:
    """Build ``cls`` from a plain dict, so the dict gets exactly the typed class's checks.

    Keys left ``None`` are treated as unset, as the typed class does.

    Raises:
        InputValidationError: A required key is missing, a key is not an input of the
            model, or a value breaks the model's rules.
    """
    fields = cls.__struct_fields__
    given = {k: v for k, v in inputs.items() if v is not None}
    for name in given:
        if name not in fields:
            raise InputValidationError(
                field=name,
                value=describe(given[name]),
                rule=f"is not an input of {cls.display_name} (its inputs: {', '.join(fields)})",
            )
    for name in fields[: len(fields) - len(cls.__struct_defaults__)]:
        if name not in given:
            raise InputValidationError(
                field=name, value=None, rule=f"is required by {cls.display_name}"
            )
    return cls(**given)


async def prepare_inputs(model_input: ModelInput) -> dict[str, object]:
    """Return the JSON body for ``model_input``, with local files checked and inlined.

    URL fields are passed through unfetched. Paths, bytes and ``data:`` URIs are read in
    a worker thread, checked against the model's rules (format by content, pixel size,
    transparency, audio length, byte caps) and sent as ``data:`` URIs.

    Args:
        model_input: A typed, already validated model input.

    Returns:
        A new dict of plain JSON values.

    Raises:
        InputValidationError: A file breaks the model's rules or RunComfy's data-URI
            caps, or the whole request would pass 64 MiB.
        ImportError: Checking a local image or MP3 needs the ``media`` extra.
    """
    payload = model_input._payload()
    for name, rule in model_input.media_rules.items():
        value = payload.get(name)
        if isinstance(value, str | bytes | os.PathLike):
            payload[name] = await encode_media(value, rule, field=name)
    check_request_size(payload)
    return payload


# --- field checks shared by the model families ------------------------------------------


def check_text(
    field: str,
    value: object,
    *,
    owner: str,
    required: bool = True,
    max_length: int | None = None,
) -> None:
    """Check a text field: a string, non-blank when required, within ``max_length``.

    Raises:
        InputValidationError: The value breaks one of those rules.
    """
    if value is None and not required:
        return
    if not isinstance(value, str):
        raise InputValidationError(
            field=field, value=value, rule=f"must be a string, not {type(value).__name__}"
        )
    if required and not value.strip():
        raise InputValidationError(
            field=field, value=value, rule="is required and must not be blank"
        )
    if max_length is not None and len(value) > max_length:
        raise InputValidationError(
            field=field,
            value=value,
            rule=f"is {len(value)} characters long; {owner} accepts at most {max_length}",
        )


def check_choice(field: str, value: object, choices: tuple[str, ...] | tuple[int, ...]) -> None:
    """Check that ``value`` is one of ``choices``, of the same type (a bool is no int).

    Raises:
        InputValidationError: The value is of the wrong type or not a choice; a string
            that differs only in case names the right spelling.
    """
    kind = type(choices[0])
    if type(value) is kind and value in choices:
        return
    listed = ", ".join(repr(c) for c in choices)
    if type(value) is not kind:
        raise InputValidationError(
            field=field,
            value=value,
            rule=f"must be {'a string' if kind is str else 'an integer'} (one of {listed}), "
            f"not {type(value).__name__}",
        )
    rule = f"must be one of {listed}"
    if isinstance(value, str):
        spelled = [c for c in choices if isinstance(c, str) and c.lower() == value.lower()]
        if spelled:
            rule += f"; did you mean {spelled[0]!r}? (case matters)"
    raise InputValidationError(field=field, value=value, rule=rule)


def check_int_range(field: str, value: object, low: int, high: int) -> None:
    """Check that ``value`` is an integer (not a bool) within ``low``..``high``.

    Raises:
        InputValidationError: The value is not an integer or is out of range.
    """
    if type(value) is not int:
        raise InputValidationError(
            field=field, value=value, rule=f"must be an integer, not {type(value).__name__}"
        )
    if not low <= value <= high:
        raise InputValidationError(field=field, value=value, rule=f"must be within {low}–{high}")


def check_bool(field: str, value: object) -> None:
    """Check that ``value`` is exactly True or False (not 0, 1 or "true").

    Raises:
        InputValidationError: The value is not a bool.
    """
    if not isinstance(value, bool):
        raise InputValidationError(
            field=field, value=value, rule=f"must be True or False, not {type(value).__name__}"
        )
