# -*- coding: utf-8 -*-
# Copyright: (c) 2026 multihome developers
# MIT License (see https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""A small TOML writer for multihome's config: targets often have a TOML reader (Python
3.11's tomllib) but no writer. Tables are written as [a.b] headers, each table's plain keys
before its sub-tables; dictionaries inside lists as inline tables."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import re


class TomlError(ValueError):
    pass


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+\Z")
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def toml_string(text):
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append("\\u%04x" % ord(char))
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def toml_key(key):
    key = str(key)
    return key if _BARE_KEY.match(key) else toml_string(key)


def toml_value(value, where):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (list, tuple)):
        items = [toml_value(v, "%s[%d]" % (where, i)) for i, v in enumerate(value)]
        return "[" + ", ".join(items) + "]"
    if isinstance(value, dict):
        items = [
            "%s = %s" % (toml_key(k), toml_value(v, "%s.%s" % (where, k)))
            for k, v in value.items()
        ]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if value is None:
        raise TomlError(
            "config: %s is null, and TOML has no null: give a value or leave the key out" % where
        )
    raise TomlError("config: %s: a %s cannot be written as TOML" % (where, type(value).__name__))


def to_toml(config, header=None):
    """The config dictionary as a TOML document."""
    if not isinstance(config, dict):
        raise TomlError("config: a dictionary is needed, not a %s" % type(config).__name__)
    lines = ["# " + line for line in header.splitlines()] if header else []

    def table(data, path):
        plain = [(k, v) for k, v in data.items() if not isinstance(v, dict)]
        tables = [(k, v) for k, v in data.items() if isinstance(v, dict)]
        if path and (plain or not tables):
            if lines:
                lines.append("")
            lines.append("[" + ".".join(toml_key(p) for p in path) + "]")
        for key, value in plain:
            where = ".".join(str(p) for p in path + [key])
            lines.append("%s = %s" % (toml_key(key), toml_value(value, where)))
        for key, value in tables:
            table(value, path + [key])

    table(config, [])
    return "\n".join(lines) + "\n"
