"""Real servers for the test suite: SeaweedFS S3, PostgreSQL and a provider CDN.

Nothing here mocks a protocol: every helper starts or talks to a real server on
loopback, so the library is exercised the way it runs in production.
"""

from .netutil import LOOPBACK, free_port, free_ports, port_open, wait_port
from .postgres import PostgresError, PostgresServer
from .provider import Provider, iter_payload, payload_sha256, render_image
from .seaweed import SeaweedError, SeaweedS3, validate_bucket_name

__all__ = [
    "LOOPBACK",
    "PostgresError",
    "PostgresServer",
    "Provider",
    "SeaweedError",
    "SeaweedS3",
    "free_port",
    "free_ports",
    "iter_payload",
    "payload_sha256",
    "port_open",
    "render_image",
    "validate_bucket_name",
    "wait_port",
]
