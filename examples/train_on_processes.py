"""Float training on several processes with Keras 3 on JAX (docs/several-machines.md): run this same file once per
process, each with the cluster in Keras' variables, or alone for one process:

    KERAS_DISTRIBUTION_JOB_ADDRESSES=127.0.0.1:12355,127.0.0.1:12356 KERAS_DISTRIBUTION_NUM_PROCESSES=2 \
        KERAS_DISTRIBUTION_PROCESS_ID=0 python examples/train_on_processes.py 2     # and PROCESS_ID=1 beside it

Each process feeds its part of every global batch of 32 (`ProcessCluster.shard`); in a fixed order (no shuffle) the
global batches are one process's batches: the first step is one process's up to float rounding (later steps drift
apart by a few percent: docs/several-machines.md). Prints the
test accuracy; process 0 saves model.keras (argument 2: where, default model.keras)."""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")  # several processes train on JAX

import keras_mbv2 as K  # noqa: E402 (after KERAS_BACKEND is set and the cluster started)
from keras_mbv2.distribute import start_process_cluster  # noqa: E402 (after KERAS_BACKEND is set and the cluster started)

cluster = start_process_cluster() if os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES") else None  # before the model

import keras  # noqa: E402 (after KERAS_BACKEND is set and the cluster started)

from keras_mbv2.datasets import load_digits  # noqa: E402 (after KERAS_BACKEND is set and the cluster started)
from keras_mbv2.training import compile_classifier  # noqa: E402 (after KERAS_BACKEND is set and the cluster started)

data = load_digits(image_size=32)
keras.utils.set_random_seed(0)
model = K.MobileNetV2((32, 32, 1), alpha=0.35, classes=10, weights=None, bn_momentum=0.9)
compile_classifier(model, 2e-3)
whole = len(data.y_train) // 32 * 32  # whole global batches: on JAX a partial one compiles the train step again
x, y, x_test, y_test, batch = data.x_train[:whole], data.y_train[:whole], data.x_test, data.y_test, 32
if cluster is not None:  # this process's part of the data, and of each global batch
    (x, y), (x_test, y_test), batch = cluster.shard(x, y), cluster.shard(x_test, y_test), batch // cluster.count
model.fit(x, y, batch_size=batch, epochs=int(sys.argv[1]) if len(sys.argv) > 1 else 2, shuffle=False, verbose=0)
print(f"test accuracy {model.evaluate(x_test, y_test, verbose=0)[1]:.4f}", flush=True)
path = sys.argv[2] if len(sys.argv) > 2 else "model.keras"
if cluster is None or cluster.chief:
    model.save(path)
else:  # saving reads the variables across the processes: every process takes part, only process 0 keeps it
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        model.save(os.path.join(tmp, "model.keras"))
