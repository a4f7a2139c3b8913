"""Build the sample models in models/ (needs TensorFlow: `pip install tensorflow-cpu`).

    python scripts/make_models.py [--out models]

Weights are random (fixed seed), so the models are small, license-free and deterministic in
shape and op set; their outputs mean nothing. See models/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SEED = 20260101
CALIBRATION_SAMPLES = 64


def _mobilenet(tf):  # type: ignore[no-untyped-def]
    """MobileNetV1, width 0.25, 128x128 input, 1000 classes (like mobilenet_v1_0.25_128)."""
    image = tf.keras.Input(shape=(128, 128, 3), batch_size=1, name="image")
    return tf.keras.applications.MobileNet(
        input_tensor=image, alpha=0.25, weights=None, classes=1000
    )


def _tiny_cnn(tf):  # type: ignore[no-untyped-def]
    """Two convolutions around a CUMSUM: a graph a typical GPU delegate takes only in part."""
    inputs = tf.keras.Input(shape=(32, 32, 3), batch_size=1, name="image")
    x = tf.keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = tf.keras.layers.MaxPooling2D(2)(x)
    x = tf.keras.layers.Lambda(lambda t: tf.math.cumsum(t, axis=3), name="channel_cumsum")(x)
    x = tf.keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    x = tf.keras.layers.Dense(10)(x)
    outputs = tf.keras.layers.Softmax()(x)
    return tf.keras.Model(inputs, outputs, name="tiny_cnn")


def _convert(tf, model, *, int8: bool) -> bytes:  # type: ignore[no-untyped-def]
    import numpy as np

    shape = (1, *model.input_shape[1:])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        rng = np.random.default_rng(SEED)

        def representative():  # type: ignore[no-untyped-def]
            for _ in range(CALIBRATION_SAMPLES):
                yield [rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def _check(path: Path) -> str:
    """Load and run the model once with LiteRT if it is installed; a short description."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return "not checked (ai-edge-litert missing)"
    import numpy as np

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    interpreter.set_tensor(inp["index"], np.zeros(inp["shape"], dtype=inp["dtype"]))
    interpreter.invoke()
    out = interpreter.get_output_details()[0]
    return f"LiteRT ok: {list(inp['shape'])} {inp['dtype'].__name__} -> {list(out['shape'])}"


def main() -> None:
    """Build every sample model into --out and print size and sha256 of each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent.parent / "models"
    )
    args = parser.parse_args()

    import tensorflow as tf

    tf.keras.utils.set_random_seed(SEED)
    args.out.mkdir(parents=True, exist_ok=True)
    mobilenet = _mobilenet(tf)
    tiny = _tiny_cnn(tf)
    outputs = {
        "mobilenet_v1_0.25_128_float.tflite": _convert(tf, mobilenet, int8=False),
        "mobilenet_v1_0.25_128_int8.tflite": _convert(tf, mobilenet, int8=True),
        "tiny_cnn_cumsum_float.tflite": _convert(tf, tiny, int8=False),
    }
    print(f"TensorFlow {tf.__version__}")
    for name, data in outputs.items():
        path = args.out / name
        path.write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        print(f"{name}\t{len(data)} bytes\tsha256 {digest}\t{_check(path)}")


if __name__ == "__main__":
    main()
