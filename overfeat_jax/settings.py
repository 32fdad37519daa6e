"""The typed settings of a training stage: what the tasks, the inference tools and the input read.

Why: the config (an ml_collections ConfigDict, `experiments/configs/`) is read ONCE, at the edge, by
`config_files.settings_from_config(config, stage)`; everything below takes these frozen dataclasses (hashable,
so they may be closed over by jitted functions as static values). This module is the bottom layer: it imports
nothing from the package and no ml_collections, jax or numpy.

Field names follow the config's (`config.model.geometry` -> `StageSettings.model.geometry`, `config.box.*` ->
`StageSettings.box.*`); sizes are pixels, scales are (height, width) pairs in pixels.
"""

import dataclasses

# The one tuple of task (stage) names, in training order (paper sections 3, 4, 5); `tasks.TASKS` maps each to
# its builder, the export artifact, predict and the sweeps accept these names.
TASK_NAMES = ('classification', 'localization', 'detection')
# Stages whose classifier has a background output after the object classes (index num_classes).
WITH_BACKGROUND = frozenset({'detection'})
REGRESSION = ('single', 'per_class')  # box regressor: one box, or one box per class

Size = tuple[int, int]


def as_sizes(scales) -> tuple[Size, ...]:
  """Scales as the configs write them (ints = squares, or (h, w) pairs) -> a tuple of (h, w) int pairs."""
  return tuple((int(s), int(s)) if isinstance(s, (int, float)) or not hasattr(s, '__len__') else
               (int(s[0]), int(s[1])) for s in scales)


@dataclasses.dataclass(frozen=True)
class ModelSettings:
  """The network (`config.model` and `config.dtype`).

  Attributes:
    geometry: registered geometry name ('fast', 'accurate', 'small'; `models.geometry.GEOMETRIES`).
    width_divisor: every width divided by this (1 = the paper's widths).
    dtype: compute dtype name, a key of `models.build.DTYPES` (parameters stay float32).
    dropout_rate: dropout of the classifier's hidden layers while training.
    init_scheme: 'paper' (N(0, 0.01)) or 'he'.
  """
  geometry: str = 'fast'
  width_divisor: int = 1
  dtype: str = 'float32'
  dropout_rate: float = 0.5
  init_scheme: str = 'paper'


@dataclasses.dataclass(frozen=True)
class EvalSettings:
  """The classification evaluation (`config.eval`, paper section 3.3).

  Attributes:
    resize: the multi-scale evaluation's input view, whole image resized to this square (pixels).
    scales: (h, w) sizes the view is resized to on the device, in pixels (paper Table 5).
    flips: also evaluate the horizontally flipped image.
    fine: offset pooling (the fine stride).
  """
  resize: int = 256
  scales: tuple[Size, ...] = ((245, 245), (281, 281), (317, 317), (389, 389), (425, 425), (461, 461))
  flips: bool = True
  fine: bool = True


@dataclasses.dataclass(frozen=True)
class BoxSettings:
  """The box regressor, its training scales and the localization/detection inference (`config.box`).

  Attributes:
    regression: one of `REGRESSION`.
    hidden: the regressor's hidden widths.
    fine: train and infer at every offset of the offset pooling.
    train_scales: (h, w) training sizes, one per step in turn: the input pipeline resizes each batch
      (`InputSettings.train_scales`, `data.preprocess.scale_of_batch`).
    eval_size: the `resize` eval view's square size (pixels).
    eval_scales: (h, w) inference sizes in pixels.
    top_k: classes kept per scale (localization).
    merge: 'overlap', 'literal' or 'nms' (`inference.localize.MERGE_CHOICES`).
    merge_average: greedy merge average, 'pair' or 'score' ('pair' for configs saved before it existed).
    threshold: greedy merge threshold t.
    nms_iou: the IoU threshold when `merge == 'nms'`.
    loss_weight: weight of the box L2 loss in the detection loss.
    score_threshold, max_per_scale, max_detections: detection only (`inference.detect.detect`).
  """
  regression: str = 'single'
  hidden: tuple[int, ...] = (4096, 1024)
  fine: bool = True
  train_scales: tuple[Size, ...] = ()
  eval_size: int = 256
  eval_scales: tuple[Size, ...] = ()
  top_k: int = 2
  merge: str = 'overlap'
  merge_average: str = 'pair'
  threshold: float = 0.8
  nms_iou: float = 0.5
  loss_weight: float = 1.0
  score_threshold: float = 0.5
  max_per_scale: int = 256
  max_detections: int = 32

  @property
  def merge_threshold(self) -> float:
    """The threshold the chosen merge uses: `nms_iou` for NMS, else the greedy merge's `threshold`."""
    return self.nms_iou if self.merge == 'nms' else self.threshold


@dataclasses.dataclass(frozen=True)
class MiningSettings:
  """Negatives of the detection loss (`config.mining`, paper section 5): per image the `num_hard` most
  offending and `num_random` random background windows; a window is a background candidate when it covers at
  most `negative_max_coverage` of every box."""
  num_hard: int = 4
  num_random: int = 4
  negative_max_coverage: float = 0.25


@dataclasses.dataclass(frozen=True)
class InputSettings:
  """What a stage's input pipeline reads and how it batches (`config.data`, the batch sizes, the crop).

  Attributes:
    dataset: the tfds dataset (`config.data.name`), e.g. 'embedded_cls_loc', 'ilsvrc2012_cls_loc/resized256',
      'voc_folder/NAME'.
    data_dir: the tfds data_dir (None: tfds's default).
    options: the builder's options (`config.data.options`, e.g. train_size), as sorted (name, value) pairs.
    train_split, eval_split: split names.
    batch_size, eval_batch_size: GLOBAL batch sizes (examples per step over every process).
    crop_size: the training crop (pixels).
    train_resize: the smaller side before the crop: a (lo, hi) scale-jitter range drawn per example, a size,
      or None (the stored images as they are).
    max_boxes: boxes per example after padding.
    seed: the input order's and the crops' seed.
    worker_count: reading processes (an int, or the config's string form such as 'auto', `data.pipeline`).
    read_as_hosts: 0, or N > 0: one process reads the global batches of an N-host run.
    train_scales: (h, w) whole-batch training sizes in turn, one per step (`box.train_scales`; the pipeline
      resizes batch b to `train_scales[b % n]`, `data.preprocess.scale_of_batch`); () = the crops as they are.
  """
  dataset: str
  data_dir: str | None
  options: tuple[tuple[str, object], ...]
  train_split: str
  eval_split: str
  batch_size: int
  eval_batch_size: int
  crop_size: int
  train_resize: int | tuple[int, int] | None
  max_boxes: int
  seed: int = 0
  worker_count: int | str = 0
  read_as_hosts: int = 0
  train_scales: tuple[Size, ...] = ()


@dataclasses.dataclass(frozen=True)
class StageSettings:
  """Everything a task reads about one stage (the top-level config with the stage's section merged over it).

  Attributes:
    stage: one of `TASK_NAMES`.
    num_classes: object classes (detection's classifier has one more output: `num_outputs`).
    crop_size: the training crop (pixels); the classification centre-crop view's size.
    model, eval: the network and the classification evaluation.
    box: the box section (localization and detection); None when the config has none.
    mining: detection's negatives; None when the config has none.
    dataset: the dataset's name (`config.data.name`), e.g. for class names of the embedded data.
    data_dir: the tfds data_dir it is read from (`config.data.data_dir`; own data's class names live there).
  """
  stage: str
  num_classes: int
  crop_size: int
  model: ModelSettings = ModelSettings()
  eval: EvalSettings = EvalSettings()
  box: BoxSettings | None = None
  mining: MiningSettings | None = None
  dataset: str = ''
  data_dir: str = ''

  @property
  def num_outputs(self) -> int:
    """The classifier's outputs: `num_classes`, plus the background class for detection."""
    return self.num_classes + (self.stage in WITH_BACKGROUND)
