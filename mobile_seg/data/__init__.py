"""Datasets: VOC-layout discovery, checking, TFRecord building, tf.data input pipeline, palette.

Modules (import them directly; only `pipeline` and `tfrecords` import TensorFlow):
- `voc`: find image/mask pairs and split files in a VOC folder or in --images/--masks dirs.
- `check`: every problem a user can have with a dataset, as records naming the file.
- `tfrecords`: `build_dataset` → sharded TFRecords + descriptor.json, atomically.
- `pipeline`: `train_dataset`, `eval_dataset`, `iterate_examples`, `read_descriptor`.
- `palette`: VOC colour map, palette PNGs, colourised masks and overlays.
"""

from mobile_seg.spec import IGNORE_LABEL  # noqa: E402
DESCRIPTOR_FORMAT = "mobile-seg-dataset/1"
