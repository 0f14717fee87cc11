"""The tap's settings: defaults and the checks JSON Schema cannot express (shared with setup)."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import pendulum

from .codat.http import MAX_PAGE_SIZE, is_loopback

DEFAULT_BASE_URL = "https://api.codat.io"
DEFAULT_PAGE_SIZE = 2000  # as fast as 5000 here, and 40% of the memory (see README, Performance)
DEFAULT_CONCURRENCY = 16
DEFAULT_REQUESTS_PER_MINUTE = 900  # under Codat's 1,000 per minute per IP, with room for the setup command
DEFAULT_QUOTA_RESERVE = 200  # requests of the daily quota left to the client's other applications


def settings_errors(config: Mapping[str, Any]) -> list[str]:
    """What JSON Schema cannot say (or says unclearly), one line per bad setting, each naming it."""
    errors = []
    if not str(config.get("api_key") or "").strip():
        errors.append(missing_setting("api_key"))
    base_url = str(config.get("base_url") or DEFAULT_BASE_URL)
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        errors.append(f"base_url: {base_url!r} is not an http(s) URL")
    elif parts.scheme != "https" and not is_loopback(base_url):
        errors.append(f"base_url: {base_url!r} must use https (plain http is allowed only on loopback)")
    page_size = config.get("page_size", DEFAULT_PAGE_SIZE)
    if not _whole(page_size) or not 1 <= page_size <= MAX_PAGE_SIZE:
        errors.append(f"page_size: {page_size!r} is not a whole number between 1 and {MAX_PAGE_SIZE}")
    start_date = config.get("start_date")
    if start_date is not None:
        try:
            pendulum.parse(str(start_date))
        except (ValueError, pendulum.parsing.exceptions.ParserError):
            errors.append(f"start_date: {start_date!r} is not a date")
    concurrency = config.get("max_concurrency", DEFAULT_CONCURRENCY)
    if not _whole(concurrency) or not 1 <= concurrency <= 64:
        errors.append(f"max_concurrency: {concurrency!r} is not a whole number between 1 and 64")
    shard_count, shard_index = config.get("shard_count", 1), config.get("shard_index", 0)
    if not _whole(shard_count) or shard_count < 1:
        errors.append(f"shard_count: {shard_count!r} is not a positive whole number")
    elif not _whole(shard_index) or not 0 <= shard_index < shard_count:
        errors.append(f"shard_index: {shard_index!r} is not between 0 and shard_count - 1 ({shard_count - 1})")
    events_file = config.get("events_file")
    if events_file and (os.path.isdir(str(events_file)) or not os.path.isdir(os.path.dirname(
            os.path.abspath(str(events_file))))):
        errors.append(f"events_file: {events_file!r} is a directory, or its directory does not exist (the file "
                      "itself may be absent: no events yet)")
    hours = config.get("reread_after_hours", 24)
    if not isinstance(hours, int | float) or isinstance(hours, bool) or hours < 0:
        errors.append(f"reread_after_hours: {hours!r} is not a number of hours (0 or more)")
    interval = config.get("state_interval", 0)
    if not isinstance(interval, int | float) or isinstance(interval, bool) or interval < 0:
        errors.append(f"state_interval: {interval!r} is not a number of seconds (0 or more)")
    try:
        company_ids = company_id_list(config.get("company_ids"))
    except ValueError as exc:
        errors.append(f"company_ids: {exc}")
        company_ids = []
    for company_id in company_ids:
        try:
            uuid.UUID(company_id)
        except ValueError:
            errors.append(f"company_ids: {company_id!r} is not a company id (a UUID); give ids as a JSON array "
                          "or one string separated by commas or spaces")
    for name in ("max_requests_per_minute", "quota_reserve", "max_failed_companies"):
        value = config.get(name, 0)
        if not _whole(value) or value < 0:
            errors.append(f"{name}: {value!r} is not a whole number (0 or more)")
    for name in ("throttle_wait", "progress_interval"):
        value = config.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            errors.append(f"{name}: {value!r} is not a number of seconds (0 or more)")
    max_retries = config.get("max_retries", 8)
    if not _whole(max_retries) or max_retries < 1:
        errors.append(f"max_retries: {max_retries!r} is not a whole number of at least 1")
    for name in ("refresh_timeout", "max_retry_after", "request_timeout"):
        value = config.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
            errors.append(f"{name}: {value!r} is not a non-negative number")
    for name in ("check_data_status", "refresh_before_read", "log_metrics"):
        value = config.get(name)
        if value is not None and not isinstance(value, bool):
            errors.append(f"{name}: {value!r} is not true or false")
    return errors


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- where settings come from -----------------------------------------------------------------
ENV_PREFIX = "TAP_CODAT_COMMERCE_"
SOURCES = ("settings come from the --config JSON file(s), then TAP_CODAT_COMMERCE_<SETTING> environment "
           "variables for what the files leave out (`--config ENV`: the environment wins)")
TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off", ""})


class SettingsError(Exception):
    """Settings that cannot be used: ``lines`` holds one message per problem, each naming its setting."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines


def env_var(setting: str) -> str:
    """The environment variable of a setting: ``page_size`` → ``TAP_CODAT_COMMERCE_PAGE_SIZE``."""
    return ENV_PREFIX + setting.upper().replace("-", "_")


def missing_setting(setting: str) -> str:
    """The one line for a required setting that no source gave."""
    return (f"{setting}: not set; add \"{setting}\" to the --config file or set {env_var(setting)} "
            f"(settings come from --config files, then TAP_CODAT_COMMERCE_* variables; with Meltano: "
            f"meltano config set tap-codat-commerce {setting})")


def read_config_file(path: str) -> dict[str, Any]:
    """One ``--config`` file as a JSON object. Raises SettingsError naming the file and the fault."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise SettingsError([f"--config {path}: cannot read it ({exc.strerror or exc})"]) from None
    except UnicodeDecodeError:
        raise SettingsError([f"--config {path}: not a text file (expected JSON in UTF-8)"]) from None
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError([f"--config {path}: not valid JSON (line {exc.lineno}, column {exc.colno}: "
                             f"{exc.msg})"]) from None
    if not isinstance(loaded, dict):
        raise SettingsError([f"--config {path}: must hold a JSON object ({{\"api_key\": …}}), not a "
                             f"{type(loaded).__name__}"])
    return loaded


def json_types(schema: Mapping[str, Any]) -> set[str]:
    """The JSON types a setting's schema allows, ``null`` left out (``anyOf``/``oneOf`` included)."""
    declared = schema.get("type")
    found = set([declared] if isinstance(declared, str) else declared or [])
    for option in schema.get("anyOf") or schema.get("oneOf") or []:
        if isinstance(option, Mapping):
            found |= json_types(option)
    return found - {"null"}


def _from_text(setting: str, text: str, schema: Mapping[str, Any]) -> Any:
    """An environment variable's text as the setting's type; ValueError says what is wrong."""
    types = json_types(schema)
    if "string" in types or not types:
        return text  # company_ids (array or string) stays text: settings parse it
    if "integer" in types:
        try:
            return int(text.strip())
        except ValueError:
            raise ValueError("is not a whole number") from None
    if "number" in types:
        try:
            return float(text.strip())
        except ValueError:
            raise ValueError("is not a number") from None
    if "boolean" in types:
        word = text.strip().lower()
        if word in TRUE_WORDS | FALSE_WORDS:
            return word in TRUE_WORDS
        raise ValueError("is not true or false")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        kind = "a JSON array" if "array" in types else "a JSON object"
        raise ValueError(f"is not {kind}") from None


def settings_from_environment(properties: Mapping[str, Mapping[str, Any]],
                              environ: Mapping[str, str]) -> dict[str, Any]:
    """Every setting given as a non-empty TAP_CODAT_COMMERCE_<SETTING> variable, typed by its schema.
    Raises SettingsError with one line per variable that cannot be its setting's type."""
    found: dict[str, Any] = {}
    errors = []
    for setting, schema in properties.items():
        text = environ.get(env_var(setting))
        if text is None or text == "":
            continue
        try:
            found[setting] = _from_text(setting, text, schema)
        except ValueError as exc:
            shown = "…" if schema.get("secret") else repr(text)
            errors.append(f"{setting}: {env_var(setting)}={shown} {exc}")
    if errors:
        raise SettingsError(errors)
    return found


def gather_settings(config_args: Iterable[str], properties: Mapping[str, Mapping[str, Any]],
                    environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings of a command line: the ``--config`` files in order (later ones win), then the
    environment for every setting they leave out; the word ``ENV`` makes the environment win."""
    config: dict[str, Any] = {}
    environment_wins = False
    problems: list[str] = []
    for arg in config_args:
        if arg == "ENV":
            environment_wins = True
            continue
        try:
            config |= read_config_file(arg)
        except SettingsError as exc:
            problems += exc.lines
    try:
        from_env = settings_from_environment(properties, environ)
    except SettingsError as exc:
        problems += exc.lines
        from_env = {}
    if problems:
        raise SettingsError(problems)
    return config | from_env if environment_wins else from_env | config


def company_id_list(value: Any) -> list[str]:
    """``company_ids`` in any accepted form as a list: a JSON array, or one string of ids separated
    by commas and/or spaces (``"id1,id2"``, ``"id1, id2"``, ``'["id1", "id2"]'``). Raises ValueError."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise ValueError(f"{value!r} starts like a JSON array but is not one") from None
        else:
            return [part for part in re.split(r"[\s,;]+", text) if part]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{value!r} is neither a list of ids nor a string of ids separated by commas")
    return [v.strip() for v in value if v.strip()]
