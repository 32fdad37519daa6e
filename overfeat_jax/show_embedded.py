"""Draws a grid of examples of the embedded dataset, their boxes and class names, as one PNG; prints its path.

  python -m overfeat_jax.show_embedded --view=det --out=/tmp/embedded        # /tmp/embedded/embedded_det_samples.png
  python -m overfeat_jax.show_embedded --view=cls_loc --out=/tmp/embedded --count=12

Exit status: 0 drawn, 2 bad input (one line). The drawing is the library's `data.embedded.sample_grid`.
"""

import io
import os

from absl import flags

from overfeat_jax import cli, storage
from overfeat_jax.data import embedded
from overfeat_jax.errors import InputError

_VIEW = flags.DEFINE_enum('view', 'cls_loc', list(embedded.VIEWS), 'Which view to draw.')
_OUT = flags.DEFINE_string('out', None, 'Directory for the PNG grid (local or a storage URL such as gs://...).')
_COUNT = flags.DEFINE_integer('count', 24, 'How many samples.', lower_bound=1)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise InputError(f'unexpected arguments: {" ".join(argv[1:])}')
  if not _OUT.value:
    raise InputError('--out is required')
  try:
    storage.makedirs(_OUT.value)
  except OSError as e:  # a file in the way, no permission
    raise InputError(f'cannot create --out={_OUT.value}: {storage.reason(e)}') from None
  path = os.path.join(_OUT.value, f'embedded_{_VIEW.value}_samples.png')
  png = io.BytesIO()
  embedded.sample_grid(_VIEW.value, count=_COUNT.value).save(png, format='png')
  storage.write_atomic(path, png.getvalue())  # atomic; remote paths as one object
  print(path)


if __name__ == '__main__':
  cli.run(main)
