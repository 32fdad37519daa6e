"""Fields shared by every training config (defaults = the paper's recipe; see docs/training.md).

Every field can be overridden on the command line (`--config.batch_size=256`); the config is locked, so a
misspelt field is an error rather than a silent no-op.
"""

import os

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  """The complete set of fields; `fast_imagenet`, `accurate_imagenet` and `embedded` change some of them."""
  c = ml_collections.ConfigDict()
  c.stages = ('classification',)  # run in order, each in workdir/<stage>
  c.seed = 0
  c.dtype = 'float32'  # compute dtype: 'float32' or 'bfloat16' (params and optimizer stay float32)
  c.num_classes = 1000

  c.data = ml_collections.ConfigDict()
  c.data.name = 'ilsvrc2012_cls_loc'
  c.data.data_dir = os.path.expanduser('~/tensorflow_datasets')
  c.data.train_split = 'train'
  c.data.eval_split = 'validation'
  c.data.options = ml_collections.ConfigDict()  # embedded dataset options (train_size, ...)
  # grain worker processes: 'auto' = the cores this process may use less 2 (0 on <= 3 cores), or a number
  # ('0': in the training process). Keep it when resuming: the batches depend on it (docs/data_pipeline.md).
  c.data.worker_count = 'auto'
  c.data.read_as_hosts = 0  # N > 0, one process only: read the global batches of an N-host run (0: off)

  c.crop_size = 231  # random training crops (and flips) of the network's input size
  c.resize_smaller = 256  # smaller side before cropping; 0 keeps the stored size
  c.scale_jitter = ()  # (lo, hi): draw the smaller side from this range per example instead (scale jitter)
  c.max_boxes = 4
  c.batch_size = 128  # global
  c.num_epochs = 90.0
  c.num_train_steps = -1  # > 0 overrides num_epochs

  c.model = ml_collections.ConfigDict()
  c.model.geometry = 'fast'
  c.model.width_divisor = 1
  c.model.dropout_rate = 0.5
  c.model.init_scheme = 'paper'  # N(0, 0.01) as in the paper; 'he' for small nets

  # The first stage starts from trained weights (overfeat_jax/checkpoint/transfer.py, docs/training.md).
  # `source`, not `from`: ml_collections cannot parse the keyword in `--config.init.from=...`.
  c.init = ml_collections.ConfigDict()
  c.init.source = ''  # '' = random init; a training workdir, an export artifact directory or a release file
  c.init.layers = 'features'  # 'features' (layers 1-5), 'hidden' (and fc6, fc7), 'all' (and the output layer)
  c.init.freeze = False  # True: the loaded layers stay fixed; False: they are fine-tuned
  c.init.stage = 'classification'  # a workdir source: whose checkpoint
  c.init.step = -1  # a workdir source: that step (-1: the latest)
  c.init.best = False  # a workdir source: the checkpoint with the lowest `metric` instead
  c.init.metric = 'center_crop/top1_error'  # the classification stage's selection metric

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = 'sgd'
  c.optimizer.momentum = 0.6
  c.optimizer.weight_decay = 1e-5  # coupled L2 (sgd), decoupled (adam); kernels only

  c.schedule = ml_collections.ConfigDict()
  c.schedule.kind = 'piecewise'
  c.schedule.base_lr = 5e-2  # at base_batch_size; scaled linearly with batch_size
  c.schedule.base_batch_size = 128
  c.schedule.decay_epochs = (30.0, 50.0, 60.0, 70.0, 80.0)
  c.schedule.decay_factor = 0.5
  c.schedule.warmup_epochs = 0.0

  c.eval = ml_collections.ConfigDict()
  c.eval.every_steps = 10_000  # 0: only at the end
  c.eval.batch_size = 256
  c.eval.resize = 256  # the multi-scale evaluation's input view: whole image resized to this square
  c.eval.scales = (245, 281, 317, 389, 425, 461)  # square sizes in pixels (paper Table 5, short sides)
  c.eval.flips = True
  c.eval.fine = True  # offset pooling (fine stride)

  c.log_every_steps = 100
  c.checkpoint_every_steps = 2000
  c.max_to_keep = 2  # latest checkpoints kept, besides the best by validation error
  c.skip_nonfinite = False  # False: stop at the first non-finite loss; True: skip such updates and count them
  return c
