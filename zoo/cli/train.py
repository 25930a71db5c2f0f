"""``zoo finetune``, ``zoo demo`` and ``zoo distributed``: segmentation training.

    zoo finetune --model drn_d_22 --weights imagenet --data oxford_iiit_pet \\
        --epochs 30 --batch-size 8 --size 384 --out runs/pets [--model-kwargs K=V ...]
    zoo demo [segment]        # offline, CPU: zoo_shapes, mIoU before/after, overlay PNG
    zoo demo heatmap          # the FC-as-convolution check on VGG16
    zoo distributed --strategy mirrored|multiworker|none --model drn_d_22 --out runs/x

The training itself lives in :mod:`zoo.training.finetune` and
:mod:`zoo.training.distributed`; this module holds their options only.
"""

from zoo.cli.common import add_model_kwargs, check_builder_options, merge_model_kwargs

# What the training commands set themselves; --model-kwargs may not.
TRAINING_FIXED = {"weights": "--weights", "classes": "the dataset", "mode": "the command (dense mode)",
                  "input_shape": "--size"}


def add_training_arguments(p):
    """The training options shared by ``finetune`` and ``demo``."""
    p.add_argument("--model", help="registry name of a model with a dense mode")
    p.add_argument("--weights", default=None,
                   help="published tag (e.g. imagenet) or a weights file; default: random init")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--size", type=int, default=None, help="square training crop side")
    p.add_argument("--scale-range", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                   help="random rescaling of training images before the crop (default 0.5 2.0)")
    p.add_argument("--steps-per-epoch", type=int, default=None,
                   help="default: one pass over the training split")
    p.add_argument("--lr", type=float, default=None, help="override the family recipe's learning rate")
    p.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), default=None,
                   help="override the family recipe's optimizer")
    p.add_argument("--precision", default="float32",
                   help="float32, mixed (float16 on GPU, bfloat16 on CPU), mixed_float16, mixed_bfloat16")
    p.add_argument("--freeze", choices=("none", "backbone"), default="none")
    p.add_argument("--no-freeze-bn", dest="freeze_bn", action="store_false", default=None,
                   help="update BatchNorm statistics (default: frozen when fine-tuning weights)")
    p.add_argument("--data-dir", default=None, help="TFDS data folder")
    p.add_argument("--manual-dir", default=None, help="TFDS manual-download folder (cityscapes)")
    p.add_argument("--download", action="store_true", help="let TFDS download a real dataset")
    p.add_argument("--no-resume", dest="resume", action="store_false",
                   help="start the run in --out over (replaces only its own checkpoint, weights, "
                        "state.json, log.csv and overlay.png)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", type=int, default=1, help="Keras fit verbosity (1: progress bar)")
    add_model_kwargs(p)


def add_demo_arguments(parser):
    """Options of ``zoo demo`` (the offline zoo_shapes fine-tuning run)."""
    parser.add_argument("--out", default="zoo_demo", help="output folder (default ./zoo_demo)")
    add_training_arguments(parser)
    parser.set_defaults(data="zoo_shapes", resume=False)
    return parser


def _training_kwargs(args):
    """Checks ``--model-kwargs`` against the model's builder; returns the dict."""
    kwargs = merge_model_kwargs(getattr(args, "model_kwargs", None), fixed=TRAINING_FIXED)
    if args.model:
        check_builder_options(args.model, kwargs)
    return kwargs


def cmd_finetune(args):
    from zoo.training import finetune

    args.model_kwargs = _training_kwargs(args)
    return finetune.finetune_main(args)


def cmd_demo(args):
    if args.which == "heatmap":
        if args.model_kwargs:
            raise ValueError("zoo demo heatmap checks a fixed VGG16; --model-kwargs is for the segment demo")
        from zoo.apps.heatmap import heatmap_demo

        heatmap_demo(args.out, size=args.heatmap_size)
        return 0
    from zoo.training import finetune

    if args.model is None:
        args.model = finetune.demo_model()
    args.model_kwargs = _training_kwargs(args)
    return finetune.demo(args)


def cmd_distributed(args):
    from zoo.training import distributed

    args.model_kwargs = _training_kwargs(args)
    return distributed.run(args)


def add_distributed_arguments(p):
    """Options of ``zoo distributed``."""
    p.add_argument("--strategy", default="mirrored", choices=("none", "mirrored", "multiworker"),
                   help="mirrored: this machine's devices; multiworker: the cluster in TF_CONFIG")
    p.add_argument("--cpu-devices", type=int, default=0,
                   help="split the CPU into N logical devices (mirrored training without GPUs)")
    p.add_argument("--model", required=True)
    p.add_argument("--weights", default=None)
    p.add_argument("--data", default="zoo_shapes")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--steps", type=int, default=10, help="training steps")
    p.add_argument("--batch-size", type=int, default=8, help="global batch size")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--optimizer", default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--precision", default="float32")
    p.add_argument("--augment", action="store_true", help="random scale/crop/flip (default: fixed resize)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    add_model_kwargs(p)
    return p


def add_parsers(subparsers):
    """Adds ``finetune``, ``distributed`` and ``demo``."""
    p = subparsers.add_parser(
        "finetune", help="fine-tune a dense model for segmentation",
        description="Fine-tune a dense model on a TFDS dataset, a folder of PNG pairs or zoo_shapes. "
                    "--out receives checkpoint.keras, checkpoint.weights.h5, state.json, log.csv and "
                    "overlay.png; the same command again resumes after the last completed epoch. Resuming "
                    "compares every option that defines the run and refuses a mismatch; --out must be "
                    "empty, new or a zoo run folder (see docs/fine-tuning.md).",
    )
    p.add_argument("--data", default="zoo_shapes",
                   help="zoo_shapes, folder:PATH, oxford_iiit_pet, cityscapes or scene_parse150")
    p.add_argument("--out", required=True, help="output folder (checkpoints, CSV log, overlay PNG)")
    add_training_arguments(p)
    p.set_defaults(func=cmd_finetune, model=None)

    s = subparsers.add_parser(
        "distributed", help="data-parallel segmentation training with tf.distribute",
        description="Data-parallel training on one machine (mirrored) or a cluster (multiworker: "
                    "every worker runs the same command; TF_CONFIG says who is who). --batch-size "
                    "is global. Each worker writes worker<index>.weights.h5 and worker<index>.json.",
    )
    add_distributed_arguments(s)
    s.set_defaults(func=cmd_distributed)

    s = subparsers.add_parser("demo", help="the offline demo on built-in defaults")
    s.add_argument("which", nargs="?", default="segment", choices=("segment", "heatmap"),
                   help="segment: fine-tune on zoo_shapes (default); heatmap: the FC-as-conv check")
    s.add_argument("--heatmap-size", type=int, default=384, help="input size of `zoo demo heatmap`")
    add_demo_arguments(s)
    s.set_defaults(func=cmd_demo)
