"""The base of the project's tfds builders: they build from local files (or generate), never download.

tfds announces every build with "Downloading and preparing dataset <size> (download: ..., generated: ...)",
which reads as a download to anyone told that nothing is downloaded (a field report). `LocalBuilder` says what
happens instead: `Building <name>/<config> from local files into <data_dir> (nothing is downloaded)...` (the
embedded dataset: `from its generator`) and, once done, `Built <name>/<config> in <data_dir>.` Everything else
is tfds' `GeneratorBasedBuilder`.

The two methods replaced are tfds' own announcement hooks (`DatasetBuilder._log_download_bytes` and
`_log_download_done`, tfds 4.9): a tfds that renames them prints its own lines again, nothing else changes.
Likewise `_create_builder_config` passes a configured `BuilderConfig` through without tfds' warning
`Using custom data configuration: <the whole config>` (printed at every build and every read of the embedded
set and of own data, whose configs are made from their options by design).
"""

import tensorflow_datasets as tfds


class LocalBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A `GeneratorBasedBuilder` whose build announcements say where the records come from (`SOURCE`)."""

  SOURCE = 'local files'

  def _describe(self) -> str:
    config = self.builder_config.name if self.builder_config else ''
    return f'{self.name}/{config}' if config else self.name

  def _log_download_bytes(self) -> None:
    print(f'Building {self._describe()} from {self.SOURCE} into {self.data_dir} (nothing is downloaded)...',
          flush=True)

  def _log_download_done(self) -> None:
    print(f'Built {self._describe()} in {self.data_dir}.', flush=True)

  def _create_builder_config(self, builder_config, version):
    if isinstance(builder_config, tfds.core.BuilderConfig) and self.get_builder_config(
        name=builder_config.name, version=builder_config.version) is None:
      return builder_config  # what tfds returns after its warning
    return super()._create_builder_config(builder_config, version)
