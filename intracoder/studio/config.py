"""The studio's options (free of FastAPI, so the CLI parser loads without it)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from intracoder.errors import UserError


@dataclass(frozen=True)
class StudioConfig:
    workspace: str = field(default=".", metadata={
        "help": "the folder whose facesets, models and videos the studio shows and writes"})
    host: str = field(default="127.0.0.1", metadata={
        "help": "address to listen on (127.0.0.1: this machine only); the page answers only "
                "to this address, 127.0.0.1, localhost and [::1] (0.0.0.0: any IP address)"})
    port: int = field(default=7860, metadata={"help": "port to listen on"})


def check(config: StudioConfig) -> None:
    if not Path(config.workspace).is_dir():
        raise UserError(f"{config.workspace}: workspace folder not found")
    if not 0 < config.port < 65536:
        raise UserError(f"--port must be within 1..65535, got {config.port}")
    missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"the studio needs {' and '.join(missing)}: pip install -r "
                        "requirements.txt")
