"""Stage 5 of 7 (run outputs): what a run leaves in its output directory, written atomically.

Every file is written to a temporary file in the same directory and moved into place with
``os.replace``, so a reader never sees half a file and an interrupted run never leaves one.
Per-ticket records go to ``records/rep-NNN.parquet`` one replication at a time (``RunDir``
is the ``sink`` of ``replicate``), so memory holds one replication's records at most; a
worker process can write its own replications (the directory, not the object, knows which
are there). ``run.json`` is written last: its presence marks a complete run.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from simulator.engine import RunResult
from simulator.streams import PURPOSE, SOURCE

__all__ = ["RunDir", "atomic_write", "package_versions", "stream_scheme"]

PACKAGES = ("capplan", "simpy", "numpy", "pandas", "scipy", "pydantic", "pyarrow", "pyyaml")
RECORDS = "records"


def _umask() -> int:
    """Return the process umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp makes 0o600


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then move it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages a run's numbers depend on."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def stream_scheme() -> dict[str, Any]:
    """How every random stream of a run is derived from the root seed (see ``streams.py``)."""
    return {
        "generator": "numpy PCG64 seeded by SeedSequence(root_seed, spawn_key=key)",
        "key": "(purpose code, replication, CRC-32 of the city name, source code)",
        "purpose_codes": dict(PURPOSE),
        "source_codes": dict(SOURCE),
        "note": "keys are built from names, so streams do not depend on call order; scenarios "
        "compared with the same seed and replication share streams (common random numbers)",
    }


class RunDir:
    """The output directory of one run; call it with each ``RunResult`` to store its records."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.written: list[Path] = []  # files other than the records
        (self.root / RECORDS).mkdir(parents=True, exist_ok=True)
        for old in (self.root / RECORDS).glob("rep-[0-9]*.parquet"):  # a previous run's
            old.unlink()

    def _done(self, path: Path) -> Path:
        """Remember a written file."""
        self.written.append(path)
        return path

    def write_text(self, name: str, text: str) -> Path:
        """Write ``text`` to ``name`` (UTF-8)."""

        def write(p: Path) -> None:
            p.write_text(text, encoding="utf-8")

        return self._done(atomic_write(self.root / name, write))

    def write_json(self, name: str, obj: Any) -> Path:
        """Write ``obj`` as indented JSON."""
        text = json.dumps(obj, indent=2, ensure_ascii=False, default=str)
        return self.write_text(name, text + "\n")

    def write_csv(self, name: str, frame: pd.DataFrame) -> Path:
        """Write ``frame`` as CSV without its index."""
        return self._done(atomic_write(self.root / name, lambda p: frame.to_csv(p, index=False)))

    def __call__(self, run: RunResult) -> None:
        """Store one replication's records in one Parquet file (the ``sink`` of ``replicate``)."""
        frame = run.records
        frame = frame.assign(replication=run.replication)
        path = self.root / RECORDS / f"rep-{run.replication:03d}.parquet"
        atomic_write(path, lambda p: frame.to_parquet(p, engine="pyarrow", index=False))

    @property
    def records(self) -> list[Path]:
        """This run's record files, by replication (a previous run's were removed at the start)."""
        return sorted((self.root / RECORDS).glob("rep-[0-9]*.parquet"))

    def finish(self, meta: dict[str, Any]) -> Path:
        """Write ``run.json``: ``meta`` plus streams, versions, record count and file list."""
        meta = {
            **meta,
            "streams": stream_scheme(),
            "versions": package_versions(),
            "record_rows": sum(pq.ParquetFile(p).metadata.num_rows for p in self.records),
            "finished_utc": now_utc(),
            "files": self.files() + ["run.json"],
        }
        return self.write_json("run.json", meta)

    def files(self) -> list[str]:
        """Written files, relative to the directory: the others in order, then the records."""
        return [str(p.relative_to(self.root)) for p in self.written + self.records]


def now_utc() -> str:
    """Return the current UTC time in ISO 8601, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")
