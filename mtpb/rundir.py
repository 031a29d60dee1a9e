"""The run directory: append-only JSON lines that survive kill -9, and the run.json manifest."""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path


PROBLEMS_FILE = "problems.jsonl"   # one problems.problem_record per problem set of the run: reports label from it


class RunDirError(Exception):
    """The run directory cannot be used as asked; the message says why and what to do."""


def repair_tail(path: Path) -> int:
    """Cut a torn last line (a write interrupted by kill -9); return how many bytes were dropped."""
    if not path.exists():
        return 0
    with open(path, "rb+") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size == 0:
            return 0
        f.seek(max(0, size - 1))
        if f.read(1) == b"\n":
            return 0
        # walk back to the last newline; everything after it is an unfinished line
        pos, step = size, 65536
        while pos > 0:
            start = max(0, pos - step)
            f.seek(start)
            chunk = f.read(pos - start)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                keep = start + nl + 1
                break
            pos = start
        else:
            keep = 0
        f.truncate(keep)
        return size - keep


def read_jsonl(path: Path):
    """Yield (line_number, record) for each line; a malformed line raises RunDirError naming it."""
    if not path.exists():
        return
    with open(path, "rb") as f:   # bytes: a line that is not UTF-8 is reported like any other bad line
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as e:   # UnicodeDecodeError is a ValueError too
                raise RunDirError(f"{path}:{number}: not a JSON line ({e}): fix or delete that line") from None
            if not isinstance(record, dict):
                raise RunDirError(f"{path}:{number}: not a JSON object: fix or delete that line")
            yield number, record


class JsonlWriter:
    """Whole lines only, flushed per write; fsync at checkpoints so a crash loses nothing checkpointed."""

    def __init__(self, path: Path):
        repair_tail(path)
        self.f = open(path, "a", encoding="utf-8")

    def write(self, record: dict):
        self.f.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.f.flush()

    def checkpoint(self):
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self):
        self.checkpoint()
        self.f.close()


def write_jsonl_atomic(path: Path, records: list[dict]):
    """A small JSON-lines file rewritten whole (problems.jsonl): a reader sees the old or the new one."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: Path, data: dict):
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_bytes())
    except ValueError as e:
        raise RunDirError(f"{path}: not valid JSON ({e}): restore it or start a new run directory") from None
    if not isinstance(data, dict):
        raise RunDirError(f"{path}: not a JSON object: restore it or start a new run directory")
    return data


def now() -> str:
    """The time stamps of run.json: UTC, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
