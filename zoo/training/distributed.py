"""Data-parallel segmentation training with ``tf.distribute``.

One command for one machine and for a cluster (``zoo distributed``, or
``zoo distributed`` with the same options; they are in
:mod:`zoo.cli.train`):

    # one machine, all local devices (GPUs, or N logical CPU devices)
    zoo distributed --strategy mirrored --model drn_d_22 --out runs/x

    # every worker of a cluster runs the same command; TF_CONFIG says who is who
    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                "task": {"type": "worker", "index": 0}}' \\
    zoo distributed --strategy multiworker --model drn_d_22 --out runs/x

``--batch-size`` is the global batch (split over all replicas). Each worker
writes ``worker<index>.weights.h5`` and ``worker<index>.json`` (losses,
replica count) in ``--out``; after synchronous training the workers' weights
are identical.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def make_strategy(kind, cpu_devices=0):
    """``none``, ``mirrored`` (local devices) or ``multiworker`` (TF_CONFIG).

    Args:
        kind: strategy name.
        cpu_devices: split the CPU into this many logical devices first (for
            testing mirrored training without GPUs); must run before TF
            initialises its devices.
    """
    import tensorflow as tf

    if cpu_devices:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(cpu_devices)])
    if kind == "none":
        return None
    if kind == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if kind == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {kind!r}; valid choices: none, mirrored, multiworker")


def fit(model, ds, strategy, epochs, steps_per_epoch=1, verbose=0):
    """``model.fit``, or under ``MultiWorkerMirroredStrategy`` an equivalent loop.

    Keras 3.15's ``fit`` fails under MultiWorkerMirroredStrategy: it builds the
    model from a batch reduced across replicas ("Attempt to convert a value
    (PerReplica...", keras-team/keras#20585), and it reduces the step's
    scalar logs with ``reduce("MEAN", axis=0)``. There the same step runs as
    ``strategy.run``: the compiled loss (scaled per replica, as in fit) and
    the compiled optimizer, which all-reduces the gradients.

    Returns:
        An object with ``history["loss"]`` (one value per epoch).
    """
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return model.fit(ds, epochs=epochs, steps_per_epoch=steps_per_epoch, verbose=verbose)
    variables = model.trainable_variables
    with strategy.scope():
        model.optimizer.build(variables)

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            loss = model.loss(y, model(x, training=True))
        model.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    @tf.function
    def step(x, y):
        return strategy.reduce("SUM", strategy.run(replica_step, args=(x, y)), axis=None)

    it = iter(strategy.experimental_distribute_dataset(ds))
    losses = []
    for _ in range(epochs):
        total = 0.0
        for _ in range(steps_per_epoch):
            x, y = next(it)
            total += float(step(x, y))
        losses.append(total / steps_per_epoch)
    return type("History", (), {"history": {"loss": losses}})()


def run(args):
    """Trains ``args.model`` for ``args.steps`` steps under ``args.strategy``.

    Args:
        args: the parsed options of ``zoo distributed``
            (:func:`zoo.cli.train.add_distributed_arguments`); ``model_kwargs``
            (a dict) goes to the builder.

    Returns:
        0; writes ``worker<index>.weights.h5`` and ``worker<index>.json`` in
        ``args.out`` and prints the latter.
    """
    from zoo.training.finetune import check_backend

    check_backend()  # tf.distribute only: refuse another backend before anything starts
    strategy = make_strategy(args.strategy, args.cpu_devices)
    import keras
    import tensorflow as tf

    from zoo.training import data, train

    keras.utils.set_random_seed(args.seed)
    source = data.load(args.data, "train", args.data_dir)
    pre = data.preprocessing_for(args.model, args.weights)
    ds = data.make_pipeline(source.dataset, args.size, args.batch_size, args.augment, pre,
                            shuffle=0, seed=args.seed, drop_remainder=True).repeat()
    if strategy is not None:
        opts = tf.data.Options()
        opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        ds = ds.with_options(opts)
    model = train.prepare(args.model, weights=args.weights, classes=source.num_classes,
                          freeze_bn=True, precision=args.precision, total_steps=args.steps,
                          optimizer=args.optimizer, learning_rate=args.lr, strategy=strategy,
                          **(getattr(args, "model_kwargs", None) or {}))
    history = fit(model, ds, strategy, epochs=args.steps, steps_per_epoch=1, verbose=0)
    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    index = task.get("index", 0)
    os.makedirs(args.out, exist_ok=True)
    model.save_weights(os.path.join(args.out, f"worker{index}.weights.h5"))
    result = {
        "losses": [float(v) for v in history.history["loss"]],
        "replicas": strategy.num_replicas_in_sync if strategy is not None else 1,
        "worker": index,
    }
    with open(os.path.join(args.out, f"worker{index}.json"), "w") as f:
        json.dump(result, f)
    print(json.dumps(result))
    return 0
