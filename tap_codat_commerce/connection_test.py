"""``tap-codat-commerce --test``: what a first run needs, checked one step at a time, read-only.

Each step is one log line (``ok``, ``warn`` or ``FAIL``) saying what was asked of Codat and what it
answered; the last line says ``passed`` or ``failed``. Nothing is written to stdout.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .codat.data_types import COMMERCE_ENDPOINTS
from .codat.http import CodatClient, CodatError, RequestFailedError
from .codat.operations import UnknownCompanyError, data_status
from .codat.paging import PageStream, records_of
from .settings import company_id_list

# Companies whose connections the test lists; the rest are counted, not opened.
MAX_COMPANIES_CHECKED = 20


@dataclass
class Findings:
    """The connections the test saw: (company id, connection) per kind."""

    linked: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    pending: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    blocked: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # Unlinked / Deauthorized
    other: int = 0  # accounting, banking…: never read


def run_connection_test(client: CodatClient, config: Mapping[str, Any], logger: logging.Logger) -> bool:
    """Check the API key, the companies in scope, their commerce connections and one record of every
    data type of the first linked one. Logs one line per step; True when nothing failed."""
    logger.info("Connection test of Codat at %s (read-only; no records are written)", client.base_url)
    try:
        passed = _run(client, config, logger)
    except CodatError as exc:
        logger.error("FAIL  %s", exc)
        passed = False
    logger.log(logging.INFO if passed else logging.ERROR, "Connection test %s", "passed" if passed else "failed")
    return passed


def _run(client: CodatClient, config: Mapping[str, Any], logger: logging.Logger) -> bool:
    wanted = company_id_list(config.get("company_ids"))
    if wanted:
        companies = []
        for company_id in wanted:
            try:
                companies.append(client.get_json(f"/companies/{company_id}"))
            except RequestFailedError as exc:
                if exc.status != 404:
                    raise
                logger.warning("warn  company_ids: no company %s (the sync skips it)", company_id)
        logger.info("ok    API key accepted; %d of the %d company_ids found", len(companies), len(wanted))
    else:
        companies = list(records_of(PageStream(client, "/companies", page_size=500)))
        logger.info("ok    API key accepted; GET /companies: %d compan%s", len(companies),
                    "y" if len(companies) == 1 else "ies")
    if not companies:
        logger.warning("warn  no companies to read: create one with tap-codat-commerce-setup create-company")
        return True
    findings = Findings()
    for company in companies[:MAX_COMPANIES_CHECKED]:
        for connection in records_of(PageStream(client, f"/companies/{company['id']}/connections", page_size=500)):
            if connection.get("sourceType") != "Commerce":
                findings.other += 1
            elif connection.get("status") == "PendingAuth":
                findings.pending.append((company["id"], connection))
            elif connection.get("status") in ("Unlinked", "Deauthorized"):
                findings.blocked.append((company["id"], connection))
            else:
                findings.linked.append((company["id"], connection))
    checked = min(len(companies), MAX_COMPANIES_CHECKED)
    scope = f"the first {checked} of {len(companies)} companies" if checked < len(companies) else (
        f"{checked} compan{'y' if checked == 1 else 'ies'}")
    logger.info("ok    connections of %s: %d linked commerce, %d waiting for the business to open their link "
                "(PendingAuth), %d Unlinked/Deauthorized (old data still readable), %d not commerce (not read)",
                scope, len(findings.linked), len(findings.pending), len(findings.blocked), findings.other)
    for company_id, connection in findings.pending[:3]:
        logger.warning("warn  company %s connection %s (%s): not authorised yet; send the business its linkUrl "
                       "(tap-codat-commerce-setup status --company %s)", company_id, connection.get("id"),
                       connection.get("platformName"), company_id)
    readable = findings.linked or findings.blocked
    if not readable:
        logger.warning("warn  nothing to read yet: no commerce connection has been linked")
        return True
    company_id, connection = readable[0]
    return _read_one_of_each(client, company_id, connection, logger)


def _read_one_of_each(client: CodatClient, company_id: str, connection: dict[str, Any],
                      logger: logging.Logger) -> bool:
    try:
        statuses = {s.data_type: s for s in data_status(client, company_id)}
    except UnknownCompanyError:
        statuses = {}
    base = f"/companies/{company_id}/connections/{connection['id']}/data/"
    readable, not_supported, not_synced = [], [], []
    for endpoint in COMMERCE_ENDPOINTS:
        status = statuses.get(endpoint.data_type)
        if status is not None and status.status == "NotSupported":
            not_supported.append(endpoint.name)
            continue
        try:
            if endpoint.single_object:
                client.get_json(base + endpoint.path)
                readable.append(endpoint.name)
            else:
                page = client.get_json(base + endpoint.path, params={"page": 1, "pageSize": 1})
                total = page.get("totalResults") if isinstance(page, dict) else None
                readable.append(f"{endpoint.name} ({total:,})" if isinstance(total, int) else endpoint.name)
        except RequestFailedError as exc:
            if exc.status == 404:
                not_supported.append(endpoint.name)
            elif exc.status == 409:
                not_synced.append(endpoint.name)
            else:
                raise
    where = f"company {company_id} connection {connection['id']} ({connection.get('platformName')})"
    logger.info("ok    %s: read the first page of %d data type%s: %s", where, len(readable),
                "" if len(readable) == 1 else "s", ", ".join(readable) or "none")
    if not_supported:
        logger.info("ok    not supported by %s (skipped by the sync): %s", connection.get("platformName"),
                    ", ".join(not_supported))
    if not_synced:
        logger.warning("warn  never synced, so not readable yet: %s (enable them with tap-codat-commerce-setup "
                       "sync-settings, then refresh and wait)", ", ".join(not_synced))
    return True
