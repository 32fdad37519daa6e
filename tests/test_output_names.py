"""The one naming rule of per-input outputs (overfeat_jax/output_names.py): distinct, stable, or refused."""

import os

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import pytest

from overfeat_jax.errors import InputError
from overfeat_jax.output_names import distinct_stems


@pytest.mark.parametrize('paths,names', [
    (['photos/cat.jpg'], ['cat']),
    (['a/x.png', 'b/x.png', 'y.jpg'], ['a_x', 'b_x', 'y']),
    (['a/c/x.png', 'b/c/x.png'], ['a_c_x', 'b_c_x']),
    (['x.png', 'x.jpg'], ['x_png', 'x_jpg']),
    (['gs://bucket/a/x.png', 'gs://bucket/c/x.png'], ['a_x', 'c_x']),
])
def test_names_follow_the_documented_rule(paths, names):
  assert distinct_stems(paths) == names


def test_relative_paths_are_told_apart_by_their_absolute_parents(tmp_path, monkeypatch):
  (tmp_path / 'in').mkdir()
  monkeypatch.chdir(tmp_path / 'in')
  assert distinct_stems(['x.png', '../x.png']) == ['in_x', f'{tmp_path.name}_x']


@pytest.mark.parametrize('paths', [['x.png', './x.png'], ['/a_b/x.png', '/a/b/x.png', '/b/x.png']])
def test_inputs_that_cannot_get_distinct_names_are_refused(paths):
  with pytest.raises(InputError, match=os.path.basename(paths[0])):
    distinct_stems(paths)


_segment = st.sampled_from(['a', 'b', 'a_b', 'x', 'x_png', 'c'])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.lists(_segment, max_size=3), _segment, st.sampled_from(['.png', '.jpg', ''])),
                min_size=1, max_size=6))
def test_names_are_distinct_or_the_call_is_refused(entries):
  paths = ['/' + '/'.join([*folders, stem + ext]) for folders, stem, ext in entries]
  stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
  try:
    names = distinct_stems(paths)
  except InputError:
    assert len(set(paths)) < len(paths) or len(set(stems)) < len(stems)  # refused only where names clash
    return
  assert len(set(paths)) == len(paths)  # the same file twice is always refused
  if len(set(stems)) == len(stems):
    assert names == stems  # the plain stem whenever it is unique
  assert len(set(names)) == len(names) == len(paths)
  assert all('/' not in n and n for n in names)
  assert distinct_stems(list(paths)) == names  # stable: the same inputs give the same names
