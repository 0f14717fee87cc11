"""Records made to match their schema, driven by the schema itself (found once per stream).

- Codat DateTimes (``format: date-time``) become RFC 3339 UTC in one fixed-width form
  (``YYYY-MM-DDTHH:MM:SS.ffffffZ``, see :mod:`tap_codat_commerce.codat.dates`).
- Numbers keep the digits Codat sent: a number sent as a string (``"12345678901234567.89"``)
  becomes an exact ``Decimal`` (an ``int`` in an integer field), never a rounded double.
- A value of another JSON type than declared becomes its type where nothing is lost: a number
  or boolean where text is declared becomes its exact literal text (``123`` → ``"123"``, a
  ``Decimal`` its own digits, a float its shortest ``repr``), a whole float in an integer field
  an ``int``. So every RECORD validates against the SCHEMA it is sent under.
- A value that cannot be its declared type becomes null, with one warning per field and
  stream: a date that is no date (``2021-02-29T00:00:00Z``), and in number fields text that
  is no number, ``NaN``, ``Infinity`` and numbers beyond a double's range (``1e400``), which
  no warehouse number column holds; and any value of another JSON type (text where an object
  is, an object where an array or a number is, a number where a date-time is, a boolean where
  a number is), at every level, in array items and map values too. With ``undeclared="keep"``
  such a value is also kept in that level's :data:`UNDECLARED`. In a field that may not be null
  (a key) it raises :class:`UnfitValueError` instead.
- Free-form JSON deeper than :data:`MAX_FREE_DEPTH` levels raises ``TooDeepError``.
- Fields the schema does not declare (``RECORD`` properties ⊆ ``SCHEMA`` properties, at every
  level whose schema lists properties) are dropped with one warning per field and stream, as
  the SDK does; with ``undeclared="keep"`` they are moved into :data:`UNDECLARED`, an untyped
  JSON object that :func:`declare_undeclared` adds to the schema at every such level.
Objects declared without properties (or with ``additionalProperties``) are free-form: kept whole.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from .codat.dates import canonical
from .codat.errors import TooDeepError
from .codat.http import CodatError

logger = logging.getLogger("tap_codat_commerce.normalise")

Normaliser = Callable[[dict[str, Any]], None]
UndeclaredMode = Literal["drop", "keep"]
UNDECLARED = "_codat_undeclared"
UNDECLARED_SCHEMA: dict[str, Any] = {"type": ["object", "null"],
                                     "description": "Fields Codat sent that this schema does not declare "
                                                    "(undeclared_fields: keep), as untyped JSON."}
# Free-form JSON (objects without properties, arrays without items, kept undeclared fields) is
# read to this depth; deeper stops the partition (TooDeepError): the SDK's record walkers recurse
# once a level, and the writer's fast path (orjson) writes 254 levels in all.
MAX_FREE_DEPTH = 200
# The largest magnitude a double holds: beyond it no warehouse number column (nor a JSON
# reader using doubles) can hold the value.
_LARGEST = Decimal("1.7976931348623157e308")
_LARGEST_FLOAT = 1.7976931348623157e308
_TEXT_CLASSES = frozenset({str, type(None)})


def check_depth(value: Any, where: str, limit: int = MAX_FREE_DEPTH) -> None:
    """Raise TooDeepError if ``value`` (free-form JSON) nests objects and arrays deeper than
    ``limit`` levels. Iterative: a value of any depth is measured without recursion."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        for child in (node.values() if node.__class__ is dict else node):
            if child.__class__ is dict or child.__class__ is list:
                if depth >= limit:
                    raise TooDeepError(f"{where}: Codat sent JSON nested deeper than {limit} levels; stopping "
                                       "rather than loading it cut")
                stack.append((child, depth + 1))


class UnfitValueError(CodatError):
    """A value that cannot be its declared type in a field that may not be null (a key): that
    record cannot be emitted, so its partition fails."""

    cause = "bad record"
    whole_run = False


def build_normaliser(schema: dict[str, Any], stream: str, undeclared: UndeclaredMode = "drop") -> Normaliser | None:
    """A function normalising a record in place (see the module's text), or None if none is needed."""
    return _object_normaliser(schema, stream, set(), undeclared)


def to_number(value: str | float | Decimal, integer: bool) -> int | float | Decimal | None:
    """``value`` as an exact number of its field's type; None if it cannot be one.

    >>> to_number("12345678901234567.89", False)
    Decimal('12345678901234567.89')
    >>> to_number("7", True), to_number("7.5", True), to_number(7.0, True), to_number("NaN", False)
    (7, None, 7, None)
    """
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
    elif isinstance(value, float):
        if not -_LARGEST_FLOAT <= value <= _LARGEST_FLOAT:  # NaN fails every comparison
            return None
        if integer:
            return int(value) if value.is_integer() else None
        return value
    else:
        number = value
    if not number.is_finite() or abs(number) > _LARGEST:
        return None
    if integer:
        return int(number) if number == number.to_integral_value() else None
    return number


def _warn_once(warned: set[str], where: str, name: str, value: Any, kind: str) -> None:
    """One warning per field and stream, however many records carry the same problem."""
    key = f"{where}.{name}"
    if key not in warned:
        warned.add(key)
        logger.warning("%s: %r is not a %s; emitted as null (further ones in this field are not logged)",
                       key, str(value)[:40], kind)


def _warn_undeclared(warned: set[str], where: str, names: list[str], kept: bool) -> None:
    for name in names:
        key = f"{where}.{name}\0undeclared"
        if key not in warned:
            warned.add(key)
            if kept:
                logger.warning("%s.%s is not in the schema; kept in %s (undeclared_fields: keep; further "
                               "ones are not logged)", where, name, UNDECLARED)
            else:
                logger.warning("%s.%s is not in the schema; dropped, as the SDK does (set undeclared_fields: "
                               "keep to load it; further ones are not logged)", where, name)


def _types(schema: dict[str, Any]) -> list[Any]:
    types = schema.get("type")
    return types if isinstance(types, list) else [types]


def _is_closed(schema: dict[str, Any]) -> bool:
    """Does this object schema list its properties (so that others are undeclared)?"""
    return bool(schema.get("properties")) and not schema.get("additionalProperties")


def declare_undeclared(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` declaring :data:`UNDECLARED` at every level that lists properties."""
    declared = copy.deepcopy(schema)

    def add(node: dict[str, Any]) -> None:
        if _is_closed(node) and UNDECLARED not in node["properties"]:
            for sub in node["properties"].values():
                if isinstance(sub, dict):
                    add(sub)
            node["properties"][UNDECLARED] = copy.deepcopy(UNDECLARED_SCHEMA)
        items = node.get("items")
        if isinstance(items, dict):
            add(items)

    add(declared)
    return declared


def without_empty_properties(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` where a free-form object says so by listing no properties at all
    (``{"type": "object"}``) rather than ``"properties": {}``: the same JSON Schema, but the
    SDK's flattening gives the former one JSON column, as it flattens its records, and the
    latter none (its records would carry a column SCHEMA does not declare)."""
    cleaned = copy.deepcopy(schema)

    def clean(node: dict[str, Any]) -> None:
        properties = node.get("properties")
        if properties == {}:
            del node["properties"]
        elif isinstance(properties, dict):
            for sub in properties.values():
                if isinstance(sub, dict):
                    clean(sub)
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                clean(node[key])

    clean(cleaned)
    return cleaned


def as_text(value: Any) -> str | None:
    """A JSON number or boolean as its exact literal text (None for anything else).

    >>> as_text(123), as_text(Decimal("12345678901234567.890")), as_text(0.1), as_text(True)
    ('123', '12345678901234567.890', '0.1', 'true')
    """
    cls = value.__class__
    if cls is bool:
        return "true" if value else "false"
    if cls is int or cls is Decimal:
        return str(value)
    if cls is float:
        return repr(value)  # the shortest text that reads back as this double
    return None


_JSON_NAMES = {dict: "an object", list: "an array", str: "text", bool: "a boolean", int: "a number",
               float: "a number", Decimal: "a number"}


def _declared_name(types: list[Any], schema: dict[str, Any]) -> str:
    declared = [t for t in types if t != "null"]
    if schema.get("format") == "date-time":
        return "a date-time"
    return " or ".join(str(t) for t in declared) or "null"


def _object_normaliser(schema: dict[str, Any], where: str, warned: set[str],
                       undeclared: UndeclaredMode) -> Normaliser | None:
    """The normaliser of one object schema, as straight-line code generated from the schema
    (one statement group per field: no per-record loops over field lists, which cost more than
    the work itself at ~20 objects a record). Nested objects that need only the
    undeclared-field check are checked inline (one C-level subset test).

    Every declared field is checked against its JSON type; the common case (the declared
    type, or null) costs one class test. A value of another type goes to :func:`unfit`."""
    properties: dict[str, Any] = schema.get("properties") or {}
    keep = undeclared == "keep"
    declared = frozenset(properties) if _is_closed(schema) else None
    keeps_here = keep and declared is not None  # this level declares UNDECLARED: mistyped values go there
    names: dict[str, Any] = {"canonical": canonical, "Decimal": Decimal, "dict": dict, "list": list, "str": str,
                             "int": int, "float": float, "bool": bool, "declared": declared,
                             "check_depth": check_depth}
    body: list[str] = []

    def constant(value: Any) -> str:
        key = f"c{len(names)}"
        names[key] = value
        return key

    def separate(record: dict[str, Any]) -> None:
        """Drop (or keep aside) the fields of ``record`` that are not declared."""
        assert declared is not None
        extra = [name for name in record if name not in declared]
        _warn_undeclared(warned, where, extra, keep)
        moved = {name: record.pop(name) for name in extra}
        if keep:
            check_depth(moved, f"{where}.{UNDECLARED}")
            record[UNDECLARED] = moved

    def bad_date(name: str, value: str) -> None:
        _warn_once(warned, where, name, value, "date")

    def unfit(record: dict[str, Any] | None, name: str, value: Any, expected: str, nullable: bool) -> None:
        """A value of another JSON type than declared: null (kept in UNDECLARED with
        ``undeclared_fields: keep`` where this level declares it), one warning per field and stream;
        a field that may not be null (a key) stops instead."""
        sent = _JSON_NAMES.get(value.__class__, value.__class__.__name__)
        if not nullable:
            raise UnfitValueError(f"{where}.{name}: Codat sent {sent} where the schema says {expected}, and it "
                                  "may not be null; stopping rather than loading the record unkeyed")
        kept = record is not None and keeps_here
        if kept:
            assert record is not None
            record.setdefault(UNDECLARED, {})[name] = value
        key = f"{where}.{name}\0type"
        if key not in warned:
            warned.add(key)
            logger.warning("%s.%s: Codat sent %s where the schema says %s; emitted as null%s (further ones in "
                           "this field are not logged)", where, name, sent, expected,
                           f", the value kept in {UNDECLARED}" if kept else "")

    def fix_number(record: dict[str, Any] | None, name: str, value: Any, integer: bool, nullable: bool) -> Any:
        cls = value.__class__
        if cls is str or cls is Decimal or cls is float:
            number = to_number(value, integer)
            if number is None:
                _warn_once(warned, where, name, value, "number" if not integer else "whole number")
            return number
        if cls is int:
            return value
        unfit(record, name, value, "a whole number" if integer else "a number", nullable)
        return None

    def fix_text(record: dict[str, Any] | None, name: str, value: Any, nullable: bool) -> Any:
        text = as_text(value)
        if text is None:
            unfit(record, name, value, "text", nullable)
        return text

    def fix_other(record: dict[str, Any] | None, name: str, value: Any, expected: str, nullable: bool) -> None:
        unfit(record, name, value, expected, nullable)

    names.update(separate=separate, bad_date=bad_date, fix_number=fix_number, fix_text=fix_text,
                 fix_other=fix_other)

    def quick_test(inner: Normaliser | None, var: str) -> str | None:
        """An inline test that is false when ``inner`` (a leaf) would change nothing in ``var``:
        only declared fields, and (an object of text fields only, a ref) only text or null in them."""
        quick = getattr(inner, "quick", None)
        if quick is None:
            return None
        keys, classes = quick
        if classes is None:
            return f"not {constant(keys)}.issuperset({var})"
        return f"not ({constant(keys)}.issuperset({var}) and {constant(classes)}.issuperset(map(type, {var}.values())))"

    def value_fixer(sub: dict[str, Any], name: str) -> Callable[[Any], Any] | None:
        """For values with no record to keep them in (array items, additionalProperties): a
        function giving the value made to fit ``sub`` (or None), or None when nothing can be wrong."""
        types = _types(sub)
        nullable = "null" in types
        if "string" in types:
            return lambda v: v if v is None or v.__class__ is str else fix_text(None, name, v, nullable)
        if "number" in types or "integer" in types:
            integer = "number" not in types
            return lambda v: v if v is None or v.__class__ is int or (v.__class__ is float and not integer) \
                else fix_number(None, name, v, integer, nullable)
        wanted = {"boolean": bool, "object": dict, "array": list}
        classes = tuple(wanted[t] for t in types if t in wanted)
        if not classes:
            return None  # no type declared: anything fits
        expected = _declared_name(types, sub)

        free = ("object" in types and not sub.get("properties")) or (
            "array" in types and not isinstance(sub.get("items"), dict))

        def fit(v: Any) -> Any:
            if v is None or v.__class__ in classes:
                if free and v:
                    check_depth(v, f"{where}.{name}")
                return v
            fix_other(None, name, v, expected, nullable)
            return None
        return fit

    if declared is not None:
        body.append("if not declared.issuperset(r): separate(r)")
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and not properties:
        fixer = value_fixer(extra, "*")
        if fixer is not None:  # a map (tags: text; supplementalData.content: objects) checks each value
            body += ["for k, v in r.items():",
                     f"    f = {constant(fixer)}(v)",
                     "    if f is not v: r[k] = f"]
    for name, sub in properties.items():
        if not isinstance(sub, dict) or name == UNDECLARED:
            continue
        types = _types(sub)
        key = repr(name)
        nullable = "null" in types
        if sub.get("format") == "date-time":
            body += [f"v = r.get({key})",
                     "if v.__class__ is str:",
                     "    f = canonical(v)",
                     f"    if f is None: bad_date({key}, v)",
                     f"    r[{key}] = f",
                     "elif v is not None:",
                     f"    fix_other(r, {key}, v, 'a date-time (text)', {nullable})",
                     f"    r[{key}] = None"]
        elif "number" in types or "integer" in types:
            # The common case (a float, always finite: see codat.http.decode_json; an int; null)
            # needs one test; text and Decimals are checked and made exact numbers; other types are unfit.
            integer = "number" not in types
            common = "v.__class__ is not int" if integer else "v.__class__ is not float and v.__class__ is not int"
            body += [f"v = r.get({key})",
                     f"if {common} and v is not None:",
                     f"    r[{key}] = fix_number(r, {key}, v, {integer}, {nullable})"]
        elif "string" in types:
            body += [f"v = r.get({key})",
                     "if v.__class__ is not str and v is not None:",
                     f"    r[{key}] = fix_text(r, {key}, v, {nullable})"]
        elif "boolean" in types:
            body += [f"v = r.get({key})",
                     "if v.__class__ is not bool and v is not None:",
                     f"    fix_other(r, {key}, v, 'a boolean', {nullable})",
                     f"    r[{key}] = None"]
        elif "object" in types:
            inner = _object_normaliser(sub, f"{where}.{name}", warned, undeclared)
            quick = quick_test(inner, "v")
            if inner is None:  # free-form: read whole, to MAX_FREE_DEPTH
                call = f"if v: check_depth(v, {where + '.' + name!r})"
            elif quick is not None:
                call = f"if {quick}: {constant(inner)}(v)"
            else:
                call = f"{constant(inner)}(v)"
            body += [f"v = r.get({key})",
                     "if v.__class__ is dict:",
                     f"    {call}",
                     "elif v is not None:",
                     f"    fix_other(r, {key}, v, 'an object', {nullable})",
                     f"    r[{key}] = None"]
        elif "array" in types:
            # Each item made to fit the items' schema: objects normalised; an item of another
            # type becomes null (one warning per field and stream).
            items = sub.get("items")
            loop = [f"    if v: check_depth(v, {where + '.' + name!r})"]  # free-form items: whole, to MAX_FREE_DEPTH
            if isinstance(items, dict):
                fixer = value_fixer(items, f"{name}[]")
                inner = (_object_normaliser(items, f"{where}.{name}[]", warned, undeclared)
                         if "object" in _types(items) else None)
                if inner is not None:
                    quick = quick_test(inner, "x")
                    test = f"x.__class__ is dict and {quick}" if quick is not None else "x.__class__ is dict"
                    loop = ["    for x in v:",
                            f"        if {test}: {constant(inner)}(x)"]
                    if fixer is not None:
                        loop += ["        elif x.__class__ is not dict and x is not None:",
                                 f"            v[:] = [{constant(fixer)}(y) for y in v]"]
                elif fixer is not None:
                    loop = ["    for x in v:",
                            f"        if {constant(fixer)}(x) is not x:",
                            f"            v[:] = [{constant(fixer)}(y) for y in v]",
                            "            break"]
            body += [f"v = r.get({key})",
                     "if v.__class__ is list:",
                     *loop,
                     "elif v is not None:",
                     f"    fix_other(r, {key}, v, 'an array', {nullable})",
                     f"    r[{key}] = None"]
    if not body:
        return None
    source = "def normalise(r):\n" + "\n".join("    " + line for line in body) + "\n"
    exec(compile(source, f"<normaliser {where}>", "exec"), names)  # names are repr() literals from the schema
    normalise: Normaliser = names["normalise"]
    if declared is not None and len(body) == 1:
        normalise.quick = (declared, None)  # type: ignore[attr-defined]  # its parent checks it inline
    elif declared is not None and all(
            set(_types(sub)) <= {"string", "null"} and sub.get("format") != "date-time"
            for name, sub in properties.items() if isinstance(sub, dict) and name != UNDECLARED):
        normalise.quick = (declared, _TEXT_CLASSES)  # type: ignore[attr-defined]  # text only (a ref): inline too
    return normalise
