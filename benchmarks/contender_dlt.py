"""The thread-pool contender for benchmark (b): dlt's rest_api source, parallelized.

Run by benchmarks/run.py in its own environment (dlt is not a dependency of the tap):

    python contender_dlt.py BASE_URL API_KEY WORKERS

Reads companies → connections → commerce orders of every connection with dlt's REST API source,
dependent resources parallelized over a pool of WORKERS threads, and prints "<seconds> <orders>".
Nothing is loaded anywhere: the source is iterated, which is the extract step alone.
"""

from __future__ import annotations

import base64
import os
import sys
import time


def main() -> int:
    base_url, api_key, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.environ["EXTRACT__WORKERS"] = str(workers)
    os.environ["RUNTIME__LOG_LEVEL"] = "ERROR"
    from dlt.sources.rest_api import rest_api_source

    paginator = {"type": "page_number", "base_page": 1, "page_param": "page", "total_path": "totalResults",
                 "maximum_page": None}
    token = base64.b64encode(api_key.encode()).decode()
    source = rest_api_source({
        "client": {"base_url": base_url, "headers": {"Authorization": f"Basic {token}"}, "paginator": paginator},
        "resource_defaults": {"endpoint": {"params": {"pageSize": 2000}, "data_selector": "results"}},
        "resources": [
            {"name": "companies", "endpoint": {"path": "companies"}},
            {"name": "connections", "parallelized": True, "include_from_parent": ["id"],
             "endpoint": {"path": "companies/{resources.companies.id}/connections"}},
            {"name": "orders", "parallelized": True,
             "endpoint": {"path": "companies/{resources.connections._companies_id}/connections/"
                                  "{resources.connections.id}/data/commerce-orders",
                          "params": {"orderBy": "modifiedDate"},
                          # a platform without orders answers 404, as Codat does: nothing to read
                          "response_actions": [{"status_code": 404, "action": "ignore"},
                                               {"status_code": 409, "action": "ignore"}]}},
        ],
    }, parallelized=True)
    started = time.perf_counter()
    orders = sum(1 for item in source.with_resources("orders") if isinstance(item, dict))
    print(f"{time.perf_counter() - started} {orders}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
