"""A local stand-in for the vendor API: contract-derived data, real HTTP, faults on demand.

Example: `with SandboxServer(SandboxSpec(size=1000)) as server:` then
`server.faults.add("products", Fault.status(503))` and GET `f"{server.base_url}/v1/products"`
with `api_key=sandbox-key`: the first request gets a 503, the next ones the data.
"""

from .data import (
    RESOURCES,
    SANDBOX_RESOURCES,
    Code,
    Dataset,
    SandboxResource,
    SandboxSpec,
    parse_timestamp_ms,
)
from .live import OMIT, Change, LiveFeed, Twice
from .server import (
    DEFAULT_API_KEY,
    VERSION_HEADER,
    Fault,
    FaultPlan,
    Reply,
    RequestRecord,
    SandboxServer,
)

__all__ = [
    "DEFAULT_API_KEY",
    "OMIT",
    "RESOURCES",
    "SANDBOX_RESOURCES",
    "VERSION_HEADER",
    "Change",
    "Code",
    "Dataset",
    "Fault",
    "FaultPlan",
    "LiveFeed",
    "Reply",
    "RequestRecord",
    "SandboxResource",
    "SandboxServer",
    "SandboxSpec",
    "Twice",
    "parse_timestamp_ms",
]
