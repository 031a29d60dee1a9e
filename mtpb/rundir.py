"""The run directory: its files and their names, the one JSON-lines reader, atomic and append-only
writing that survive kill -9, and the repair of a torn last line.

    RUN/run.json          the manifest (settings, digests, time stamps)
    RUN/samples.jsonl     one line per (problem, test, sample), appended
    RUN/results.jsonl     one line per executed program (mtpb.scoring.result_record), appended
    RUN/problems.jsonl    one problems.problem_record per problem set of the run: reports label from it
    RUN/summary.json      the headline numbers (mtpb.summary)
"""
from __future__ import annotations

import itertools
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

MANIFEST_FILE, SAMPLES_FILE, RESULTS_FILE = "run.json", "samples.jsonl", "results.jsonl"
PROBLEMS_FILE, SUMMARY_FILE = "problems.jsonl", "summary.json"


class RunDirError(Exception):
    """A run directory (or a file given in its place) cannot be used as asked; the message names the
    file, the line where there is one, and what to do."""


class RunDir:
    """One run directory: where each of its files is, and how each is written."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.manifest = self.path / MANIFEST_FILE
        self.samples = self.path / SAMPLES_FILE
        self.results = self.path / RESULTS_FILE
        self.problems = self.path / PROBLEMS_FILE
        self.summary = self.path / SUMMARY_FILE

    def create(self):
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunDirError(f"--out {self.path}: cannot create the folder ({e.strerror or e}): "
                              "give a folder path you can write to") from None

    def lock(self):
        """The run's one-writer lock (mtpb.runlock), the folder created first; use it as `with`."""
        from mtpb.runlock import RunLock
        self.create()
        return RunLock(self.path)

    def read_manifest(self) -> dict | None:
        """run.json, or None for a run not started yet."""
        return load_json(self.manifest) if self.manifest.exists() else None

    def write_manifest(self, manifest: dict):
        write_json_atomic(self.manifest, manifest)

    def write_problems(self, records: list[dict]):
        write_jsonl_atomic(self.problems, records)

    def write_summary(self, summary: dict):
        write_json_atomic(self.summary, summary)

    def repair(self):
        """Cut the lines torn by kill -9 off the appended files: they are redone."""
        for path in (self.samples, self.results):
            repair_tail(path)

    def discard_if_unused(self):
        """Remove what a start wrote when no sample or result followed, so that a corrected command
        can use the same folder as a new run."""
        if any(f.exists() and f.stat().st_size for f in (self.samples, self.results)):
            return
        for f in (self.manifest, self.samples, self.results, self.problems):
            f.unlink(missing_ok=True)


def read_jsonl(path: Path, warnings: list[str] | None = None) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; a file not written yet has none.

    Strict without `warnings`: a malformed line (torn, not JSON, not an object) raises RunDirError
    naming it, for steps that would otherwise redo or lose work silently. Lenient with `warnings`:
    the line is skipped and counted, and one warning names the first, for readers such as reports,
    where one torn line must not hide the thousands of good ones."""
    if not path.exists():
        return
    bad, first_bad = 0, None
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                # strict: a stray byte is a bad line like any other; lenient: it costs that character only
                record = json.loads(line if warnings is None else line.decode("utf-8", "replace"))
            except ValueError as e:   # UnicodeDecodeError is a ValueError too
                record, why = None, f"not a JSON line ({e})"
            else:
                why = "not a JSON object"
            if isinstance(record, dict):
                yield number, record
                continue
            if warnings is None:
                raise RunDirError(f"{path}:{number}: {why}: fix or delete that line")
            bad += 1
            first_bad = first_bad or f"{path}:{number}: {why}"
    if bad:
        warnings.append(f"{first_bad}; {bad} malformed line(s) in {path} skipped: "
                        f"fix or delete them, or rerun the step that wrote the file")


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


def _line(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False) + "\n"


class JsonlWriter:
    """Whole lines only, written straight to the file; fsync at checkpoints so a crash loses nothing
    checkpointed. A write that fails (full disk, Ctrl-C) is cut back to the last whole line."""

    def __init__(self, path: Path):
        repair_tail(path)
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def write(self, record: dict):
        data = memoryview(_line(record).encode("utf-8"))
        end = os.lseek(self.fd, 0, os.SEEK_END)
        try:
            while data:
                data = data[os.write(self.fd, data):]
        except BaseException as e:
            os.ftruncate(self.fd, end)   # a cut line would be read as a malformed one
            if isinstance(e, OSError) and not e.filename:
                e.filename = str(self.path)   # so the message says which file could not be written
            raise

    def checkpoint(self):
        os.fsync(self.fd)

    def close(self):
        try:
            self.checkpoint()
        finally:
            os.close(self.fd)


def _write_atomic(path: Path, texts: Iterable[str]):
    """A file rewritten whole: a reader, or a run killed meanwhile, sees the old one or the new one."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(texts)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:   # a full disk, say: no half-written .tmp is left behind
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and not e.filename:
            e.filename = str(path)
        raise


def write_jsonl_atomic(path: Path, records: Iterable[dict]):
    _write_atomic(path, map(_line, records))


def write_json_atomic(path: Path, data: dict):
    _write_atomic(path, [json.dumps(data, indent=2, ensure_ascii=False) + "\n"])


def load_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as e:
        raise RunDirError(f"{path}:1: not readable JSON ({e}): restore it or start a new run directory") from None
    if not isinstance(data, dict):
        raise RunDirError(f"{path}:1: not a JSON object: restore it or start a new run directory")
    return data


def chunks(items: Iterable, size: int) -> Iterator[list]:
    """Batches of `size` (the last may be shorter): the unit of work between two checkpoints."""
    it = iter(items)
    while batch := list(itertools.islice(it, size)):
        yield batch


def now() -> str:
    """The time stamps of run.json: UTC, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
