"""`gcp-storage-emulator`, with the one header tensorstore needs added: run it as the emulator's own command.

  python tests/faults/gcs_emulator.py start --host=127.0.0.1 --port=9023 --in-memory --default-bucket=bkt

The emulator's media downloads lack the `x-goog-generation` header that GCS sends and tensorstore's OCDBT driver
reads (without it the first checkpoint with several arrays fails: `Malformed StorageGeneration`). This adds it,
with `x-goog-metageneration`. The emulator ignores generation preconditions; one writer per object never needs
them.
"""

import sys

from gcp_storage_emulator.handlers import objects

_download = objects.download


def download(request, response, storage, *args, **kwargs):
  _download(request, response, storage, *args, **kwargs)
  try:
    obj = storage.get_file_obj(request.params['bucket_name'], request.params['object_id'])
  except Exception:  # pylint: disable=broad-except  (NotFound: the 404 is already set)
    return
  response['x-goog-generation'] = str(obj['generation'])
  response['x-goog-metageneration'] = str(obj['metageneration'])


objects.download = download

if __name__ == '__main__':
  from gcp_storage_emulator.__main__ import main  # pylint: disable=g-import-not-at-top  (routes read the patch)
  main(sys.argv[1:])
