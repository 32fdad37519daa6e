"""Drawing predictions on images (Pillow), like the paper's figures: coloured boxes with class names and scores.

Small images (the embedded dataset's 72 or 128 pixels) are enlarged first (nearest neighbour, so pixels stay
visible) until the longer side reaches `min_side`, so that labels are readable; boxes are scaled with them. Box
coordinates are in the project convention (continuous pixels, `x2` exclusive): the outline is drawn on the
last pixel inside the box.
"""

import colorsys
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def class_colour(index: int) -> tuple[int, int, int]:
  """A distinct saturated colour per class (golden-ratio hue steps)."""
  r, g, b = colorsys.hsv_to_rgb((index * 0.618033988749895) % 1.0, 0.9, 1.0)
  return int(r * 255), int(g * 255), int(b * 255)


def draw_predictions(image: np.ndarray, boxes: Sequence[Sequence[float]], classes: Sequence[int],
                     scores: Sequence[float], names: Sequence[str] | None = None, *, min_side: int = 384,
                     title: str | None = None) -> Image.Image:
  """The RGB uint8 image [H, W, 3] with every (box, class, score) drawn; returns a Pillow image."""
  im = Image.fromarray(np.asarray(image, np.uint8)).convert('RGB')
  zoom = max(1, int(np.ceil(min_side / max(im.size))))
  if zoom > 1:
    im = im.resize((im.width * zoom, im.height * zoom), Image.NEAREST)
  pen = ImageDraw.Draw(im)
  font = ImageFont.load_default()
  width = max(2, zoom // 2)
  for box, cls, score in zip(boxes, classes, scores):
    colour = class_colour(int(cls))
    x1, y1, x2, y2 = (float(v) * zoom for v in box)
    pen.rectangle([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)], outline=colour, width=width)
    name = names[cls] if names is not None and 0 <= cls < len(names) else str(int(cls))
    label = f'{name} {float(score):.2f}'
    left, top, right, bottom = pen.textbbox((0, 0), label, font=font)
    ty = y1 - (bottom - top) - 4 if y1 - (bottom - top) - 4 >= 0 else y1 + width
    pen.rectangle([x1, ty, x1 + right - left + 4, ty + bottom - top + 4], fill=colour)
    pen.text((x1 + 2, ty + 2 - top), label, fill=(0, 0, 0), font=font)
  if title:
    pen.rectangle([0, 0, pen.textbbox((0, 0), title, font=font)[2] + 6, 14], fill=(0, 0, 0))
    pen.text((3, 1), title, fill=(255, 255, 255), font=font)
  return im
