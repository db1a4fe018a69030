"""A local stand-in for the vendor API: deterministic data, real HTTP, faults on demand.

Example: `with SandboxServer(SandboxSpec(size=1000)) as server:` then
`server.faults.add("products", Fault.status(503))` and GET `f"{server.base_url}/v1/products"`
with `api_key=sandbox-key`: the first request gets a 503, the next ones the data.
"""

from .data import RESOURCES, Dataset, SandboxSpec, parse_timestamp_ms
from .server import DEFAULT_API_KEY, Fault, FaultPlan, Reply, RequestRecord, SandboxServer

__all__ = [
    "DEFAULT_API_KEY",
    "RESOURCES",
    "Dataset",
    "Fault",
    "FaultPlan",
    "Reply",
    "RequestRecord",
    "SandboxServer",
    "SandboxSpec",
    "parse_timestamp_ms",
]
