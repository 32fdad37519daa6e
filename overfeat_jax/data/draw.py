"""Procedural scenes for the embedded dataset: shapes over textured clutter, drawn with numpy and Pillow.

Why procedural: the project needs a dataset that is built offline in seconds, is identical on every machine
for a seed, and still has the properties that make OverFeat's tricks matter: objects at many scales (so
multi-scale evaluation helps), at any position (so a fine output stride helps), several instances (so box
merging helps), partial occlusion, and clutter that belongs to no class.

What a picture looks like: a background made of one or two textures (at reduced contrast) (sinusoid gratings of random orientation
and period, checkerboards, low-frequency colour blotches, a colour gradient) plus pixel noise; over it, thin
open strokes (lines, arcs, zig-zags) as distractors; then the objects: outlined, filled silhouettes (disc, square,
triangle, ring, plus, star, hexagon, T, crescent, arrow, L, hourglass) in a random colour, often with inner
stripes or spots in a second colour and a light/dark shading, rotated by up to 15 degrees, with aspect ratio
jitter; finally, sometimes an occluder (a thick bar or a background-textured patch) over part of an object.
Classes differ by shape only: every colour and texture is drawn for every class.

Boxes are the tight box of the object's full silhouette (amodal, before occlusion), clipped to the image, in
the project's convention (docs/CONVENTIONS.md: pixel `i` covers `[i, i + 1)`)."""

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from overfeat_jax.metrics import boxes as box_lib

CLASS_NAMES = ('disc', 'square', 'triangle', 'ring', 'plus', 'star', 'hexagon', 'tee', 'crescent', 'arrow',
               'ell', 'hourglass')
MAX_ROTATION_DEG = 15.0  # Small enough that square/diamond-like confusions cannot arise from rotation alone.
_SUPERSAMPLE = 3  # Silhouettes are drawn 3x larger and box-filtered down: anti-aliased edges.


def _circle(cx: float, cy: float, r: float, n: int = 40) -> np.ndarray:
  t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
  return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def _rect(x1: float, y1: float, x2: float, y2: float) -> np.ndarray:
  return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float64)


def _regular(n: int, r: float, phase: float = 0.0) -> np.ndarray:
  t = phase + np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
  return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _star() -> np.ndarray:
  t = -np.pi / 2 + np.arange(10) * np.pi / 5
  r = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
  return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


# Each class: a list of (polygon in [-1, 1]^2, fill) painted in order; fill 0 cuts a hole.
_SHAPES = {
    'disc': [(_circle(0, 0, 1), 1)],
    'square': [(_rect(-0.85, -0.85, 0.85, 0.85), 1)],
    'triangle': [(np.array([[0, -1], [1, 0.8], [-1, 0.8]], np.float64), 1)],
    'ring': [(_circle(0, 0, 1), 1), (_circle(0, 0, 0.55), 0)],
    'plus': [(_rect(-1, -0.3, 1, 0.3), 1), (_rect(-0.3, -1, 0.3, 1), 1)],
    'star': [(_star(), 1)],
    'hexagon': [(_regular(6, 1.0), 1)],
    'tee': [(_rect(-1, -1, 1, -0.45), 1), (_rect(-0.28, -1, 0.28, 1), 1)],
    'crescent': [(_circle(0, 0, 1), 1), (_circle(0.5, -0.2, 0.8), 0)],
    'arrow': [(np.array([[-1, -0.28], [0.1, -0.28], [0.1, -0.8], [1, 0], [0.1, 0.8], [0.1, 0.28],
                         [-1, 0.28]]), 1)],
    'ell': [(_rect(-0.8, -1, -0.25, 1), 1), (_rect(-0.8, 0.45, 0.8, 1), 1)],
    'hourglass': [(np.array([[-0.85, -1], [0.85, -1], [0, 0], [0.85, 1], [-0.85, 1], [0, 0]]), 1)],
}


def silhouette(class_id: int, size: int, rng: np.random.Generator) -> np.ndarray:
  """Draws one class's silhouette, randomly rotated and stretched, as a `[size, size]` alpha map."""
  angle = math.radians(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
  aspect = math.exp(rng.uniform(-0.25, 0.25))
  rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
  stretch = np.array([aspect, 1.0 / aspect])
  parts = [(poly * stretch) @ rot.T for poly, _ in _SHAPES[CLASS_NAMES[class_id]]]
  extent = max(np.abs(p).max() for p in parts)  # Fit the rotated, stretched shape to the canvas.
  big = size * _SUPERSAMPLE
  canvas = Image.new('L', (big, big), 0)
  pen = ImageDraw.Draw(canvas)
  for poly, (_, fill) in zip(parts, _SHAPES[CLASS_NAMES[class_id]]):
    pts = (poly / extent * 0.5 + 0.5) * (big - 1)
    pen.polygon([tuple(p) for p in pts], fill=255 * fill)
  return np.asarray(canvas.reduce(_SUPERSAMPLE), np.float32) / 255.0


def random_colour(rng: np.random.Generator) -> np.ndarray:
  """A random RGB colour in [0, 255], float32 `[3]`."""
  return rng.uniform(0.0, 255.0, size=3).astype(np.float32)


def _grating(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
  """Sinusoid stripes between two colours, `[h, w, 3]`."""
  theta, period = rng.uniform(0, np.pi), rng.uniform(3.0, 16.0)
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  phase = (xx * math.cos(theta) + yy * math.sin(theta)) * 2 * np.pi / period + rng.uniform(0, 6.3)
  t = 0.5 + 0.5 * np.sin(phase)
  return t[..., None] * random_colour(rng) + (1 - t[..., None]) * random_colour(rng)


def _checker(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
  cell = int(rng.integers(3, 12))
  yy, xx = np.mgrid[0:h, 0:w]
  t = (((yy // cell) + (xx // cell)) % 2).astype(np.float32)[..., None]
  return t * random_colour(rng) + (1 - t) * random_colour(rng)


def _blotches(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
  """Low-frequency colour noise: a coarse random grid upsampled bilinearly."""
  g = int(rng.integers(3, 9))
  coarse = rng.uniform(0, 255, size=(g, g, 3)).astype(np.uint8)
  return np.asarray(Image.fromarray(coarse).resize((w, h), Image.BILINEAR), np.float32)


def _gradient(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  theta = rng.uniform(0, 2 * np.pi)
  t = xx * math.cos(theta) + yy * math.sin(theta)
  t = ((t - t.min()) / max(float(np.ptp(t)), 1.0))[..., None]
  return t * random_colour(rng) + (1 - t) * random_colour(rng)


_TEXTURES = (_grating, _checker, _blotches, _gradient)


def texture(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
  """A random texture `[h, w, 3]` float32: one texture, or a blend of two."""
  tex = _TEXTURES[rng.integers(len(_TEXTURES))](h, w, rng)
  if rng.random() < 0.5:
    alpha = rng.uniform(0.3, 0.7)
    tex = alpha * tex + (1 - alpha) * _TEXTURES[rng.integers(len(_TEXTURES))](h, w, rng)
  return tex


def object_fill(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
  """The paint of an object: a flat colour, stripes or spots in a second colour, with light/dark shading."""
  base = np.broadcast_to(random_colour(rng), (h, w, 3)).astype(np.float32)
  kind = rng.integers(3)
  if kind == 1:
    base = 0.6 * base + 0.4 * _grating(h, w, rng)
  elif kind == 2:
    spots = (rng.random((h, w)) < 0.15)[..., None]
    base = np.where(spots, random_colour(rng), base)
  yy = np.linspace(-1, 1, h, dtype=np.float32)[:, None, None]
  return base * (1.0 + rng.uniform(-0.25, 0.25) * yy)


# How much of the texture's contrast the background keeps. At full contrast a small network on 2 CPU cores
# memorised the training backgrounds instead of learning shapes (test error stayed near chance for 2,000 steps);
# at 0.45 it learns the shapes (25% error after 2,000 steps of 64, falling), and the clutter still hides small
# objects at the base scale.
BACKGROUND_CONTRAST = 0.45


def background(size: int, rng: np.random.Generator) -> np.ndarray:
  """A cluttered background `[size, size, 3]` float32: texture (contrast reduced) plus per-pixel noise."""
  tex = texture(size, size, rng).astype(np.float32)
  mean = tex.mean(axis=(0, 1), keepdims=True)
  noise = rng.standard_normal(size=(size, size, 3), dtype=np.float32) * np.float32(rng.uniform(2.0, 14.0))
  return mean + BACKGROUND_CONTRAST * (tex - mean) + noise


def outline(alpha: np.ndarray) -> np.ndarray:
  """The silhouette grown by one pixel: painted dark or light under the object, it becomes a contour."""
  grown = Image.fromarray(np.round(alpha * 255).astype(np.uint8)).filter(ImageFilter.MaxFilter(3))
  return np.asarray(grown, np.float32) / 255.0


def paste(image: np.ndarray, alpha: np.ndarray, paint: np.ndarray, x: int, y: int) -> None:
  """Alpha-blends `paint` `[h, w, 3]` with `alpha` `[h, w]` into `image` at (x, y), clipped to the image."""
  h, w = alpha.shape
  ih, iw = image.shape[:2]
  x1, y1, x2, y2 = max(x, 0), max(y, 0), min(x + w, iw), min(y + h, ih)
  if x1 >= x2 or y1 >= y2:
    return
  a = alpha[y1 - y:y2 - y, x1 - x:x2 - x, None]
  image[y1:y2, x1:x2] = image[y1:y2, x1:x2] * (1 - a) + paint[y1 - y:y2 - y, x1 - x:x2 - x] * a


def paste_layer(image: np.ndarray, layer: Image.Image, colour: np.ndarray) -> None:
  """Paints `colour` through the 'L' mask `layer` (image-sized), touching only the mask's bounding box."""
  bbox = layer.getbbox()
  if bbox is None:
    return
  x1, y1, x2, y2 = bbox
  alpha = np.asarray(layer.crop(bbox), np.float32) / 255.0
  paste(image, alpha, np.broadcast_to(colour, (y2 - y1, x2 - x1, 3)), x1, y1)


def tight_box(alpha: np.ndarray, x: int, y: int, image_size: int) -> np.ndarray | None:
  """The box of the silhouette's pixels with alpha >= 0.5, shifted to (x, y) and clipped; None when empty."""
  rows, cols = np.nonzero(alpha.max(axis=1) >= 0.5)[0], np.nonzero(alpha.max(axis=0) >= 0.5)[0]
  if rows.size == 0:
    return None
  box = np.array([x + cols[0], y + rows[0], x + cols[-1] + 1, y + rows[-1] + 1], np.float32)
  box = np.clip(box, 0, image_size)
  if box[2] - box[0] < 1 or box[3] - box[1] < 1:
    return None
  return box


def draw_strokes(image: np.ndarray, count: int, rng: np.random.Generator) -> None:
  """Distractors: open strokes (lines, arcs, zig-zags) that belong to no class."""
  size = image.shape[0]
  layer = Image.new('L', (size, size), 0)
  pen = ImageDraw.Draw(layer)
  for _ in range(count):
    layer.paste(0, (0, 0, size, size))
    width = int(rng.integers(1, 4))
    kind = rng.integers(3)
    if kind == 0:
      pen.line([tuple(rng.uniform(0, size, 2)), tuple(rng.uniform(0, size, 2))], fill=255, width=width)
    elif kind == 1:
      cx, cy, r = *rng.uniform(0, size, 2), rng.uniform(4, size / 3)
      start = rng.uniform(0, 360)
      pen.arc([cx - r, cy - r, cx + r, cy + r], start, start + rng.uniform(60, 200), fill=255, width=width)
    else:
      pts = np.cumsum(rng.uniform(-size / 6, size / 6, size=(int(rng.integers(3, 6)), 2)), axis=0)
      pts += rng.uniform(0, size, 2)
      pen.line([tuple(p) for p in pts], fill=255, width=width)
    paste_layer(image, layer, random_colour(rng))


def occlude(image: np.ndarray, box: np.ndarray, rng: np.random.Generator) -> None:
  """Covers part of the object in `box`: a thick bar across it, or a textured patch over one corner.

  The patch covers at most ~40% of the box's area, so the object stays recognisable.
  """
  x1, y1, x2, y2 = box
  w, h = x2 - x1, y2 - y1
  if rng.random() < 0.5:
    pw, ph = int(max(2, w * rng.uniform(0.3, 0.6))), int(max(2, h * rng.uniform(0.3, 0.65)))
    px = int(x1 - pw * 0.3) if rng.random() < 0.5 else int(x2 - pw * 0.7)
    py = int(y1 - ph * 0.3) if rng.random() < 0.5 else int(y2 - ph * 0.7)
    paste(image, np.ones((ph, pw), np.float32), texture(ph, pw, rng), px, py)
  else:
    size = image.shape[0]
    layer = Image.new('L', (size, size), 0)
    t = rng.uniform(0.2, 0.8)
    thick = int(max(2, min(w, h) * rng.uniform(0.12, 0.25)))
    if rng.random() < 0.5:
      pts = [(x1 - 0.2 * w, y1 + t * h), (x2 + 0.2 * w, y1 + rng.uniform(0.2, 0.8) * h)]
    else:
      pts = [(x1 + t * w, y1 - 0.2 * h), (x1 + rng.uniform(0.2, 0.8) * w, y2 + 0.2 * h)]
    ImageDraw.Draw(layer).line(pts, fill=255, width=thick)
    paste_layer(image, layer, random_colour(rng))


def sample_size(rng: np.random.Generator, min_size: int, max_size: int) -> int:
  """Object size (pixels of the silhouette's square canvas), log-uniform so each octave is equally common."""
  return int(round(math.exp(rng.uniform(math.log(min_size), math.log(max_size)))))


def place_object(image: np.ndarray, class_id: int, size: int, rng: np.random.Generator,
                 taken: list[np.ndarray], max_iou: float) -> np.ndarray | None:
  """Draws one object of `class_id` at a random free position; returns its box, or None if no room."""
  image_size = image.shape[0]
  alpha = silhouette(class_id, size, rng)
  for _ in range(20):
    x, y = (int(v) for v in rng.integers(0, image_size - size + 1, size=2))
    box = tight_box(alpha, x, y, image_size)
    if box is not None and overlap(box, taken) <= max_iou:
      tone = 20.0 if rng.random() < 0.5 else 235.0  # a contour in black or white: shape over colour
      paste(image, outline(alpha), np.full((size, size, 3), tone, np.float32), x, y)
      paste(image, alpha, object_fill(size, size, rng), x, y)
      return box
  return None


def overlap(box: np.ndarray, taken: list[np.ndarray]) -> float:
  """The largest IoU of `box [4]` with the boxes already `taken` (0 when none), rounded through float32.

  The IoU is the metrics' (`metrics.boxes.pairwise_iou`, float64). The scenes of a seed were generated with a
  float32 quotient: boxes here have integer edges, so rounding to float32 gives that quotient bit for bit, and
  returning it as a Python float keeps the comparison with `max_iou` in float64 (an IoU of exactly 1/5 stays
  above 0.2), so the scenes stay what they were.
  """
  if not taken:
    return 0.0
  return float(np.float32(box_lib.pairwise_iou(box[None], np.stack(taken)).max()))


def finish(image: np.ndarray) -> np.ndarray:
  return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def draw_scene(rng: np.random.Generator, *, image_size: int, classes: list[int], min_size: int, max_size: int,
               occlusion_prob: float = 0.3,
               max_iou: float = 0.2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Draws a scene with one object per entry of `classes` (those that find room).

  Returns:
    image uint8 `[S, S, 3]`, boxes float32 `[N, 4]`, box_labels int64 `[N]` of the objects actually drawn.
  """
  image = background(image_size, rng)
  draw_strokes(image, int(rng.integers(1, 5)), rng)
  boxes, labels = [], []
  for c in classes:
    size = min(sample_size(rng, min_size, max_size), image_size)
    box = place_object(image, c, size, rng, boxes, max_iou)
    if box is not None:
      boxes.append(box)
      labels.append(c)
  for box in boxes:
    if rng.random() < occlusion_prob:
      occlude(image, box, rng)
  if rng.random() < 0.5:
    draw_strokes(image, int(rng.integers(1, 3)), rng)  # Some clutter in front of the objects too.
  return finish(image), np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64)
