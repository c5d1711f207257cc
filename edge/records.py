"""Per-frame records that survive the run: streamed to CSV as frames are answered, the summary and the plot
written atomically at the end.

    out = RecordFiles("profile/run", RECORD_FIELDS)   # refuses an unwritable place now, not after the run
    out.add(record)                                     # one CSV row, flushed: a kill leaves every row written so far
    out.finish(doc, plot)                               # run.json and run.png: a temporary file, then a rename

The previous run's ``PATH.csv``, ``PATH.json`` and ``PATH.png`` are removed when a new run opens the same path, so
a run never leaves its files beside another run's: after any interruption the files present are all this run's.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Callable

SUFFIXES = (".csv", ".json", ".png")


class OutputError(OSError):
    """The output path cannot be written (names it and why); raised before the run starts."""


def output_stem(out: str | os.PathLike) -> Path:
    """PATH for PATH.csv / PATH.json / PATH.png; a suffix among those is dropped (``run.json`` -> ``run``)."""
    stem = Path(out)
    return stem.with_suffix("") if stem.suffix in SUFFIXES else stem


def _tmp(path: Path) -> Path:
    """A temporary name beside ``path`` with the same suffix (matplotlib picks the format by it)."""
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def atomic_write(path: Path, write: Callable[[Path], bool | None]) -> bool:
    """``write(tmp)`` then rename ``tmp`` to ``path`` (readers see the old file or the whole new one, never half);
    ``write`` returning False means it wrote nothing. -> whether ``path`` was written."""
    tmp = _tmp(path)
    try:
        if write(tmp) is False:
            return False
        os.replace(tmp, path)
        return True
    finally:
        if tmp.exists():
            tmp.unlink()


class RecordFiles:
    def __init__(self, out: str | os.PathLike, fields: tuple[str, ...]):
        self.stem = output_stem(out)
        self.fields = fields
        self.paths = {s[1:]: self.stem.with_name(self.stem.name + s) for s in SUFFIXES}
        if self.stem.name in ("", ".", ".."):
            raise OutputError(f"--out {out}: give a file path stem such as profile/run")
        try:
            self.stem.parent.mkdir(parents=True, exist_ok=True)
            for kind in ("json", "png"):  # the previous run's: they must not sit beside this run's CSV
                if self.paths[kind].exists():
                    self.paths[kind].unlink()
            self._csv = open(self.paths["csv"], "w", newline="", encoding="utf-8")
        except OSError as e:
            raise OutputError(f"--out {out}: cannot write {self.stem}.csv/.json/.png: {e.strerror or e}") from None
        self.rows = 0
        self._write_row({f: f for f in fields})

    def _write_row(self, record: dict) -> None:
        buf = io.StringIO()
        csv.DictWriter(buf, fieldnames=self.fields, extrasaction="ignore").writerow(record)
        self._csv.write(buf.getvalue())  # one write of a whole row, then flushed
        self._csv.flush()

    def add(self, record: dict) -> None:
        self._write_row(record)
        self.rows += 1

    def finish(self, doc: dict, plot: Callable[[Path], bool] | None = None) -> dict[str, Path]:
        """Close the CSV; write ``doc`` as PATH.json and, when ``plot(path)`` draws it (True), PATH.png, each
        atomically. -> the paths written."""
        self._csv.close()
        written = {"csv": self.paths["csv"]}
        atomic_write(self.paths["json"], lambda p: p.write_text(json.dumps(doc, indent=1) + "\n"))
        written["json"] = self.paths["json"]
        if plot is not None and atomic_write(self.paths["png"], plot):
            written["png"] = self.paths["png"]
        return written

    def close(self) -> None:
        if not self._csv.closed:
            self._csv.close()
