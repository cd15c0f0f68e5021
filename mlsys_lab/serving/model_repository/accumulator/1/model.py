"""accumulator: OUTPUT = SUM_IN + INPUT, and the new sum is also the state for the next request."""

import numpy as np


class Model:
    def execute(self, inputs):
        total = (inputs["SUM_IN"] + inputs["INPUT"]).astype(np.int32)
        return {"OUTPUT": total, "SUM_OUT": total}
