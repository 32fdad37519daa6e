"""TensorBoard scalars (`train.logging.Writer`): finite values are written, non-finite ones (the mAP of an
evaluation split without ground-truth boxes) are left out with one warning, so TensorBoard never gets a NaN."""

import math
import pathlib
import struct

from overfeat_jax.train.logging import Writer
from tensorboardX.proto import event_pb2


def read_scalars(logdir: pathlib.Path) -> dict[str, list[float]]:
  """Every scalar of the events files under `logdir` (TFRecord framing: length, crc, event proto, crc)."""
  scalars = {}
  for file in logdir.glob('events.out.tfevents*'):
    data, at = file.read_bytes(), 0
    while at < len(data):
      (length,) = struct.unpack('<Q', data[at:at + 8])
      event = event_pb2.Event.FromString(data[at + 12:at + 12 + length])
      at += 12 + length + 4
      for value in event.summary.value:
        scalars.setdefault(value.tag, []).append(value.simple_value)
  return scalars


def test_non_finite_scalars_are_not_written_and_are_named_in_a_warning(tmp_path, caplog):
  writer = Writer(str(tmp_path))
  with caplog.at_level('WARNING'):
    writer.scalars(7, {'multiscale/mAP': math.nan, 'multiscale/map_error': math.inf, 'multiscale/count': 16.0},
                   prefix='eval/')
  writer.close()
  assert read_scalars(tmp_path) == {'eval/multiscale/count': [16.0]}
  warnings = [r.getMessage() for r in caplog.records if 'not written to TensorBoard' in r.getMessage()]
  assert len(warnings) == 1 and 'eval/multiscale/mAP, eval/multiscale/map_error' in warnings[0], warnings
