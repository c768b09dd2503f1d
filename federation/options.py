"""A foreign member's options, as a configuration file gives them to its adapter factory.

:class:`Options` takes the settings an :class:`~federation.interfaces.AdapterFactory`
needs one by one, checking each, and :meth:`Options.done` refuses the ones
left over.  Every mistake is a :class:`~federation.ConfigurationError` of one
sentence naming the member and the setting.  Values come from TOML (typed)
or from ZConfig (text: ``"10"``, ``"true"``); numbers and booleans are
accepted in either form.  A password is never read from the file: an
option ``password_env`` names the environment variable holding it, and no
message quotes its value.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import Any

from federation.errors import ConfigurationError, describe, shorten

#: Text a ZConfig file may give for a boolean.
_BOOLEANS = {"true": True, "yes": True, "on": True, "1": True,
             "false": False, "no": False, "off": False, "0": False}

_MISSING = object()


class Options:
    """The options of member ``member``: a mapping of setting names to values."""

    def __init__(self, member: str, options: Mapping[str, Any]) -> None:
        if not isinstance(options, Mapping):
            raise ConfigurationError(
                f"Member {shorten(member)}: the options of its adapter must be a table of "
                f"settings, not {shorten(options)}."
            )
        self.member = member
        self._left = dict(options)

    def _fail(self, setting: str, problem: str) -> ConfigurationError:
        return ConfigurationError(
            f"Member {shorten(self.member)}: the option {setting!r} {problem}."
        )

    def _take(self, setting: str, default: Any) -> Any:
        value = self._left.pop(setting, default)
        if value is _MISSING:
            raise self._fail(setting, "is required")
        return value

    def text(self, setting: str, default: Any = _MISSING) -> Any:
        """A non-empty string (``default`` when the option is absent)."""
        value = self._take(setting, default)
        if value is not default and (not isinstance(value, str) or not value):
            raise self._fail(setting, f"must be a non-empty string, not {shorten(value)}")
        return value

    def number(self, setting: str, kind: type, default: Any, minimum: float) -> Any:
        """An ``int`` or ``float`` of at least ``minimum`` (text is converted)."""
        value = self._take(setting, default)
        if value is default:
            return value
        converted: Any = value
        if isinstance(value, str):
            try:
                converted = kind(value)
            except ValueError:
                converted = None
        if (isinstance(converted, bool) or not isinstance(converted, (int, float))
                or (kind is int and not isinstance(converted, int))
                or not minimum <= converted < float("inf")):
            what = "an integer" if kind is int else "a number"
            raise self._fail(setting, f"must be {what} of at least {minimum}, not "
                                      f"{shorten(value)}")
        return kind(converted)

    def flag(self, setting: str, default: bool) -> bool:
        """A boolean (``true``/``false`` text is converted)."""
        value = self._take(setting, default)
        if isinstance(value, str) and value.lower() in _BOOLEANS:
            return _BOOLEANS[value.lower()]
        if not isinstance(value, bool):
            raise self._fail(setting, f"must be true or false, not {shorten(value)}")
        return value

    def texts(self, setting: str, default: Any = _MISSING) -> list[str]:
        """A list of non-empty strings; one string is a list of one."""
        value = self._take(setting, default)
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items or not all(
                isinstance(item, str) and item for item in items):
            raise self._fail(setting, f"must be a list of strings, not {shorten(value)}")
        return items

    def table(self, setting: str, default: Any = _MISSING) -> dict[str, Any]:
        """A table (a mapping of names to values)."""
        value = self._take(setting, default)
        if not isinstance(value, Mapping):
            raise self._fail(setting, f"must be a table, not {shorten(value)}")
        return dict(value)

    def text_table(self, setting: str) -> dict[str, str]:
        """A table of names to non-empty strings, empty when absent."""
        value = self.table(setting, {})
        if not all(isinstance(item, str) and item for item in value.values()):
            raise self._fail(setting, f"must map names to strings, not {shorten(value)}")
        return value

    def importable(self, setting: str) -> Any:
        """The object a dotted name (``package.module.Name`` or ``package.module:Name``) names."""
        name = self.text(setting)
        try:
            return import_object(name)
        except ConfigurationError as error:
            raise self._fail(setting, f"names {shorten(name)}, which {error}") from error

    def klass(self, setting: str) -> type:
        """The class a dotted name names."""
        found = self.importable(setting)
        if not isinstance(found, type):
            raise self._fail(setting, f"names {shorten(found)}, which is not a class")
        return found

    def path(self, setting: str, default: Any = _MISSING) -> Any:
        """A file path (made absolute against the configuration file before it gets here)."""
        return self.text(setting, default)

    def password(self, setting: str = "password_env") -> str | None:
        """The password in the environment variable the option names; None when absent."""
        variable = self.text(setting, None)
        if variable is None:
            return None
        password = os.environ.get(variable)
        if not password:
            raise self._fail(setting, f"names the environment variable {shorten(variable)}, "
                                      "which is not set")
        return password

    def done(self) -> None:
        """Refuse the options nobody took."""
        if self._left:
            unknown = ", ".join(sorted(shorten(key, 40).strip("'") for key in self._left))
            raise ConfigurationError(
                f"Member {shorten(self.member)} has unknown adapter options: {unknown}."
            )


def import_object(name: str) -> Any:
    """The object ``package.module.Name`` or ``package.module:Name`` names.

    Failures are a :class:`ConfigurationError` whose text completes "which ...".
    """
    if not isinstance(name, str) or not name:
        raise ConfigurationError("is not a dotted name")
    module_name, colon, attribute = name.partition(":")
    if not (module_name and attribute) if colon else "." not in name.strip("."):
        raise ConfigurationError("is not a dotted name such as package.module.Name")
    try:
        if colon:
            found: Any = importlib.import_module(module_name)
            for part in attribute.split("."):
                found = getattr(found, part)
        else:  # as ZODB.config.importable_name: modules as far as they go, then attributes
            parts = name.split(".")
            found = importlib.import_module(parts[0])
            for number, part in enumerate(parts[1:], start=2):
                try:
                    found = getattr(found, part)
                except AttributeError:
                    found = importlib.import_module(".".join(parts[:number]))
    except Exception as error:  # ImportError, AttributeError, or the module's own failure
        raise ConfigurationError(
            f"cannot be imported ({type(error).__name__}: {describe(error)})"
        ) from error
    return found
