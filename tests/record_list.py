"""An in-memory data source for pipeline tests: a list of records standing in for a tfds source."""


class RecordList:
  """`len`, `source[i]` and a repr that names the class and its size (part of the pipeline's saved state, as a
  tfds source's repr is). Subclasses fill `self._records`."""

  _records: list[dict]

  def __len__(self) -> int:
    return len(self._records)

  def __getitem__(self, i: int) -> dict:
    return self._records[i]

  def __repr__(self) -> str:
    return f'{type(self).__name__}({len(self)})'
