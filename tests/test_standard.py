"""singer-sdk's standard tap tests, run against a sandbox over real HTTP.

The SDK lists the streams at collection time, so the sandbox starts when this module
is imported and stops when the interpreter exits.
"""

from __future__ import annotations

import atexit

from singer_sdk.testing import SuiteConfig, get_tap_test_class

from tap_codat_commerce.sandbox import Sandbox, Settings
from tap_codat_commerce.tap import TapCodatCommerce

# Commerce Sandbox + Shopify + Square: every commerce data type has records somewhere.
_sandbox = Sandbox(Settings(companies=3, orders=60, sync_delay=0, seed=3)).start()
atexit.register(_sandbox.stop)

TestTapCodatCommerce = get_tap_test_class(
    TapCodatCommerce,
    config={"api_key": _sandbox.api_key, "base_url": _sandbox.base_url, "page_size": 25},
    suite_config=SuiteConfig(max_records_limit=None),
)
