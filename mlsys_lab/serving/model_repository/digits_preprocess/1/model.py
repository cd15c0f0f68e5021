"""digits_preprocess: uint8 8x8 images of pixel counts (0..16) -> float32 vectors in [0, 1]."""

import numpy as np


class Model:
    """The ``numpy`` backend's interface: ``execute`` maps a batch of inputs to a batch of outputs."""

    def execute(self, inputs):
        images = inputs["IMAGE"]
        # Counts above 16 cannot come from the data set; clip rather than pass values > 1 on.
        x = np.minimum(images, 16).astype(np.float32) / np.float32(16.0)
        return {"INPUT": x.reshape(len(images), 64)}
