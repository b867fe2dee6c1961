"""Naive peer: download each file whole into memory with httpx, then boto3 ``put_object``.

Run as ``python -m bench.workers.naive JOB.json``. It is what a hurried integration looks
like, so it keeps library defaults (boto3 retries and checksums, httpx buffering) on purpose.
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.config import Config


def main() -> None:
    job: dict[str, Any] = json.loads(Path(sys.argv[1]).read_text())
    s3 = job["s3"]
    concurrency = int(job["concurrency"])
    workers = 1 if job["mode"] == "sequential" else concurrency
    client = boto3.client(
        "s3",
        endpoint_url=s3["endpoint"],
        aws_access_key_id=s3["access_key"],
        aws_secret_access_key=s3["secret_key"],
        region_name=s3["region"],
        config=Config(max_pool_connections=workers, s3={"addressing_style": "path"}),
    )
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    bucket: str = job["bucket"]

    with httpx.Client(limits=limits, timeout=120.0) as http:

        def copy(url: str, key: str) -> int:
            response = http.get(url)
            response.raise_for_status()
            body = response.content
            content_type = response.headers.get("content-type", "application/octet-stream")
            client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
            return len(body)

        started = time.perf_counter()
        if workers == 1:
            sizes = [copy(url, key) for url, key in zip(job["urls"], job["keys"], strict=True)]
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                sizes = list(pool.map(copy, job["urls"], job["keys"]))
        elapsed = time.perf_counter() - started

    result = {"files": len(sizes), "bytes": sum(sizes), "xfer_s": elapsed}
    Path(job["result"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
