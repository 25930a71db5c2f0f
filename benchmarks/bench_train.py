"""fit() throughput (images/s) of dense models at 512x512, batch 2:
FCN-8s and the DRN dense model (DRNSeg, drn_d_22), float32 and
mixed_bfloat16, plus an equivalent PyTorch FCN-8s training step (same
layers, SGD) in the same run when torch is installed."""

import time

import numpy as np

SIZE, BATCH, STEPS = 512, 2, 1


def _keras_case(name, precision, repeat):
    import keras
    import tensorflow as tf

    from zoo import train

    keras.utils.set_random_seed(0)
    model = train.prepare(name, classes=21, freeze_bn=False, precision=precision, total_steps=100,
                          optimizer="sgd", learning_rate=1e-4)
    x = np.random.default_rng(0).uniform(-1, 1, (BATCH, SIZE, SIZE, 3)).astype("float32")
    y = np.random.default_rng(1).integers(0, 21, (BATCH, SIZE, SIZE)).astype("int32")
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(ds, steps_per_epoch=1, epochs=1, verbose=0)  # trace + warm up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        model.fit(ds, steps_per_epoch=STEPS, epochs=1, verbose=0)
        times.append((time.perf_counter() - t0) / STEPS)
    return float(np.median(times))


def _torch_fcn8s(torch, classes=21):
    nn = torch.nn

    def block(cin, cout, n):
        layers = []
        for i in range(n):
            layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=100 if cin == 3 and i == 0 else 1),
                       nn.ReLU(inplace=True)]
        return nn.Sequential(*layers, nn.MaxPool2d(2, 2, ceil_mode=True))

    class FCN8s(nn.Module):
        def __init__(self):
            super().__init__()
            self.b1, self.b2, self.b3 = block(3, 64, 2), block(64, 128, 2), block(128, 256, 3)
            self.b4, self.b5 = block(256, 512, 3), block(512, 512, 3)
            self.head = nn.Sequential(nn.Conv2d(512, 4096, 7), nn.ReLU(True), nn.Dropout2d(),
                                      nn.Conv2d(4096, 4096, 1), nn.ReLU(True), nn.Dropout2d(),
                                      nn.Conv2d(4096, classes, 1))
            self.score_pool4 = nn.Conv2d(512, classes, 1)
            self.score_pool3 = nn.Conv2d(256, classes, 1)
            self.up2 = nn.ConvTranspose2d(classes, classes, 4, 2, bias=False)
            self.up_pool4 = nn.ConvTranspose2d(classes, classes, 4, 2, bias=False)
            self.up8 = nn.ConvTranspose2d(classes, classes, 16, 8, bias=False)
            for m in (self.up2, self.up_pool4, self.up8):
                m.weight.requires_grad_(False)

        def forward(self, x):
            h, w = x.shape[2:]
            p3 = self.b3(self.b2(self.b1(x)))
            p4 = self.b4(p3)
            s = self.up2(self.head(self.b5(p4)))
            s4 = self.score_pool4(p4)[:, :, 5:5 + s.shape[2], 5:5 + s.shape[3]]
            s = self.up_pool4(s + s4)
            s3 = self.score_pool3(p3)[:, :, 9:9 + s.shape[2], 9:9 + s.shape[3]]
            s = self.up8(s + s3)
            return s[:, :, 31:31 + h, 31:31 + w]

    return FCN8s()


def _torch_case(repeat):
    import torch

    torch.manual_seed(0)
    model = _torch_fcn8s(torch)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=255)
    x = torch.rand(BATCH, 3, SIZE, SIZE) * 2 - 1
    y = torch.randint(0, 21, (BATCH, SIZE, SIZE))

    def step():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    step()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(STEPS):
            step()
        times.append((time.perf_counter() - t0) / STEPS)
    return float(np.median(times))


def run(args):
    from zoo import train

    repeat = max(1, min(args.repeat, 2))
    dense = train.dense_models()
    rows = []
    torch_s = None
    try:
        import torch  # noqa: F401

        torch_s = _torch_case(repeat)
        rows.append({"case": f"torch fcn8s fit {SIZE}x{SIZE} b{BATCH} float32", "median_s": torch_s,
                     "images_per_s": BATCH / torch_s})
    except ImportError:
        pass
    for name in ("fcn8s", "drn_d_22"):
        if name not in dense:
            continue
        for precision in ("float32", "mixed_bfloat16"):
            t = _keras_case(name, precision, repeat)
            row = {"case": f"{name} fit {SIZE}x{SIZE} b{BATCH} {precision}", "median_s": t,
                   "images_per_s": BATCH / t}
            if name == "fcn8s" and torch_s:
                row["peer"] = "torch fcn8s float32"
                row["ratio"] = t / torch_s
            rows.append(row)
    return rows
