"""A local S3 server (moto's standalone server, from PyPI) on 127.0.0.1, so tansu can keep its
log in `s3://bucket/` and survive a restart in tests."""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from cli.procs import ManagedProcess, free_port


class S3Server:
    def __init__(self, log_dir: Path, bucket: str = "tansu") -> None:
        self.port = free_port()
        self.bucket = bucket
        self.log_dir = log_dir
        self.process: ManagedProcess | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def tansu_env(self) -> dict[str, str]:
        """What tansu's object-store client reads to reach this server."""
        return {
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def start(self, ready_within: float = 30.0) -> S3Server:
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.process = ManagedProcess("moto", argv, log_dir=self.log_dir).start()
        deadline = time.monotonic() + ready_within
        while True:
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1).close()
                break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline or not self.process.alive:
                    raise RuntimeError(f"moto did not start:\n{self.process.log_tail(20)}") from None
                time.sleep(0.1)
        create = urllib.request.Request(f"{self.endpoint}/{self.bucket}", method="PUT")
        urllib.request.urlopen(create, timeout=5).close()
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
