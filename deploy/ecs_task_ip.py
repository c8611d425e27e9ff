"""Print the private IPv4 address of this ECS task, from the task metadata endpoint (v4).

The web start script adds it to DJANGO_ALLOWED_HOSTS: the load balancer's health check
addresses the task by IP, and the address is known only once the task runs.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request


def task_ipv4(metadata_uri: str, timeout: float = 2.0) -> str:
    # The container endpoint describes this container, including its awsvpc network.
    with urllib.request.urlopen(metadata_uri, timeout=timeout) as response:  # noqa: S310
        container = json.load(response)
    for network in container.get("Networks", []):
        for address in network.get("IPv4Addresses", []):
            return str(address)
    raise LookupError(f"no IPv4 address in the task metadata at {metadata_uri}")


def main() -> int:
    uri = os.environ.get("ECS_CONTAINER_METADATA_URI_V4")
    if not uri:
        print("ECS_CONTAINER_METADATA_URI_V4 is not set: not running on ECS", file=sys.stderr)
        return 1
    print(task_ipv4(uri))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
