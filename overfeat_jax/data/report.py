"""Counts every record a data builder skipped or repaired, by reason, so that nothing is dropped silently.

Real ImageNet has a PNG named `.JPEG`, CMYK and grayscale JPEGs, boxes past the border and wrong size fields;
a builder repairs what it can and skips the rest, and this report is how the user learns what happened (absl
log lines at the end of the build and a `build_report.json` next to the dataset).
"""

import collections
import json
import os
from typing import Any, Mapping

from absl import logging

from overfeat_jax import storage

REPORT_FILENAME = 'build_report.json'
_MAX_EXAMPLES = 5  # Item names kept per reason: enough to find the files, small for a 1.2 M-image build.


class BuildReport:
  """Per-split counters: images kept, skipped and repaired (by reason), with a few example items."""

  def __init__(self, split: str):
    self.split = split
    self.kept = 0
    self.skipped: collections.Counter[str] = collections.Counter()
    self.repaired: collections.Counter[str] = collections.Counter()
    self.examples: dict[str, list[str]] = {}
    self.notes: list[str] = []

  def keep(self) -> None:
    """Counts one record written."""
    self.kept += 1

  def skip(self, reason: str, item: str) -> None:
    """Counts one image (or line, or annotation) left out of the dataset."""
    self.skipped[reason] += 1
    self._remember(f'skipped:{reason}', item)

  def repair(self, reason: str, item: str, count: int = 1) -> None:
    """Counts `count` repairs of one image or its boxes (the record is kept)."""
    self.repaired[reason] += count
    self._remember(f'repaired:{reason}', item)

  def note(self, text: str) -> None:
    """Records a one-off remark (which layout was detected, which source gave the class list)."""
    self.notes.append(text)
    logging.info('[%s] %s', self.split, text)

  def _remember(self, key: str, item: str) -> None:
    items = self.examples.setdefault(key, [])
    if len(items) < _MAX_EXAMPLES:
      items.append(item)

  def to_dict(self) -> dict[str, Any]:
    return {
        'split': self.split,
        'kept': self.kept,
        'skipped_total': sum(self.skipped.values()),
        'skipped': dict(sorted(self.skipped.items())),
        'repaired': dict(sorted(self.repaired.items())),
        'examples': self.examples,
        'notes': self.notes,
    }

  def log(self) -> None:
    """One summary line per split, then one line per reason (absl INFO, WARNING if anything was skipped)."""
    log = logging.warning if self.skipped else logging.info
    log('[%s] kept %d records, skipped %d, repairs %d', self.split, self.kept, sum(self.skipped.values()),
        sum(self.repaired.values()))
    for kind, counts in (('skipped', self.skipped), ('repaired', self.repaired)):
      for reason, n in sorted(counts.items()):
        logging.info('[%s]   %s %-32s %d  e.g. %s', self.split, kind, reason, n,
                     self.examples[f'{kind}:{reason}'])


def write_reports(directory: os.PathLike | str, reports: Mapping[str, BuildReport], **extra: Any) -> str:
  """Writes `{split: report}` (plus `extra` top-level fields) as JSON into `directory` (local or gs://),
  atomically (`storage.write_json_atomic`); returns the path."""
  path = os.path.join(os.fspath(directory), REPORT_FILENAME)
  payload = dict(extra)
  payload['splits'] = {name: r.to_dict() for name, r in reports.items()}
  storage.write_json_atomic(path, payload)
  return path


def read_report(directory: os.PathLike | str) -> dict[str, Any]:
  """Reads the JSON written by `write_reports` (from a dataset's versioned directory)."""
  return json.loads(storage.path(os.path.join(os.fspath(directory), REPORT_FILENAME)).read_text())
