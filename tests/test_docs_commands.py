"""The documented shell commands work as written when copied: a dataset built with `--data_dir=D` is read by
the training commands that follow it with `--config.data.data_dir=D`, and `$PWD` in a flag value is quoted (a
clone whose path has a space splits an unquoted one into two arguments)."""

import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
PAGES = [REPO / 'README.md', *sorted((REPO / 'docs').glob('*.md'))]
DEFAULT_DATA_DIR = '$HOME/tensorflow_datasets'  # what tfds reads when no data_dir is given


def _commands(page: pathlib.Path) -> list[list[str]]:
  """Each fenced block's commands, continuation lines joined, comments dropped."""
  blocks = re.findall(r'^```[^\n]*\n(.*?)^```', page.read_text(), flags=re.M | re.S)
  blocks += re.findall(r'(?:^ {4}[^\n]*\n)+', page.read_text(), flags=re.M)  # indented blocks
  out = []
  for block in blocks:
    joined = re.sub(r'\\\n\s*', ' ', block)
    out.append([line.split(' #')[0].strip() for line in joined.splitlines() if 'python' in line])
  return out


@pytest.mark.parametrize('page', PAGES, ids=lambda p: p.name)
def test_training_reads_the_data_dir_the_block_built_into(page):
  for commands in _commands(page):
    built = None
    for command in commands:
      if 'build_dataset' in command:
        built = re.search(r'--data_dir=(\S+)', command).group(1)
      elif 'overfeat_jax.main' in command and built not in (None, DEFAULT_DATA_DIR):
        assert f'--config.data.data_dir={built}' in command, (page.name, command)


@pytest.mark.parametrize('page', PAGES, ids=lambda p: p.name)
def test_pwd_in_a_flag_value_is_quoted(page):
  assert not re.findall(r'=\$PWD\S*', page.read_text()), page.name
