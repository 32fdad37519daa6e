"""A sweep's records -> a Markdown table shaped like the paper's Table 2, and a plot of error against cost.

Table 2 of the paper: approach | top-1 error % | top-5 error %; here with the cost of each approach added
(GFLOP per image from `Geometry.multiply_adds`, and measured milliseconds per image), and for localization and
detection sweeps the localization error or the mAP.
"""

import io
import math
import os
from typing import Sequence

from overfeat_jax import storage

COLUMNS = {
    'classification': [('top-1 err %', 'top1_error', 100), ('top-5 err %', 'top5_error', 100)],
    'localization': [('loc err %', 'loc_error', 100), ('top-5 cls err %', 'top5_error', 100)],
    'detection': [('mAP %', 'mAP', 100)],
}
# The metric each task's plot shows (lower is better except mAP).
PLOTTED = {'classification': 'top5_error', 'localization': 'loc_error', 'detection': 'mAP'}


def _fmt(value: float, scale: float) -> str:
  return '–' if value is None or (isinstance(value, float) and math.isnan(value)) else f'{value * scale:.2f}'


def markdown_table(records: Sequence[dict]) -> str:
  """One row per record, in order: approach | metrics | GFLOP/img | ms/img | compile s | images."""
  if not records:
    return '(no points)\n'
  task = records[0]['task']
  columns = COLUMNS[task]
  head = ['Approach'] + [c[0] for c in columns] + ['GFLOP/img', 'ms/img', 'compile s', 'images']
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for r in records:
    m = r['metrics']
    cells = [r['label'].replace('|', '/')] + [_fmt(m.get(key), scale) for _, key, scale in columns]
    cells += [f'{r["gflop_per_image"]:.4f}', f'{r["ms_per_image"]:.3f}', f'{r["compile_seconds"]:.1f}',
              str(m.get('count', r['images']))]
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def short_label(record: dict) -> str:
  """A compact tag for plot annotations: view, scales, stride, flips, models."""
  p = record['point']
  if p['view'] == 'dense':
    tag = f'{p["num_scales"]}s {"F" if p["fine"] else "C"}{"+f" if p["flips"] else ""}'
  else:
    tag = ('10v' if p['flips'] else '5v') if p['view'] == 'ten_crop' else 'cc' + ('+f' if p['flips'] else '')
  if len(p['models']) > 1:
    tag += f' x{len(p["models"])}'
  elif p['models'] != [0]:
    tag += f' m{p["models"][0]}'
  if record['task'] != 'classification':
    tag += f' {p["merge"][:3]}{p["threshold"]:g}'
    if p.get('average', 'pair') != 'pair':  # records written before the field existed are 'pair'
      tag += f' {p["average"]}-w'
  return tag


def plot_cost(records: Sequence[dict], path: str, title: str = '') -> str:
  """Error (or mAP) against GFLOP/image and against measured ms/image, one annotated dot per point."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  task = records[0]['task']
  key = PLOTTED[task]
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
  for ax, cost, xlabel in ((axes[0], 'gflop_per_image', 'GFLOP per image (2 x multiply-adds)'),
                           (axes[1], 'ms_per_image', 'measured ms per image')):
    xs = [r[cost] for r in records]
    ys = [100 * r['metrics'][key] for r in records]
    ensemble = [len(r['point']['models']) > 1 for r in records]
    colors = ['tab:red' if e else ('tab:blue' if r['point']['view'] == 'dense' else 'tab:green')
              for e, r in zip(ensemble, records)]
    ax.scatter(xs, ys, c=colors, s=28, zorder=3)
    for x, y, r in zip(xs, ys, records):
      ax.annotate(short_label(r), (x, y), fontsize=7, xytext=(3, 3), textcoords='offset points')
    if min(xs) > 0 and max(xs) / min(xs) > 20:
      ax.set_xscale('log')
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f'{key.replace("_", " ")} %')
    ax.grid(True, alpha=0.3)
  fig.suptitle(title or f'{task}: error against evaluation cost (blue dense, green crops, red ensembles; '
               'Ns = scales, F/C = fine/coarse stride, +f = flips)', fontsize=9)
  storage.makedirs(storage.path(path).parent)
  png = io.BytesIO()
  fig.savefig(png, dpi=110, format=os.path.splitext(path)[1][1:] or 'png')
  storage.write_atomic(path, png.getvalue())
  plt.close(fig)
  return path
