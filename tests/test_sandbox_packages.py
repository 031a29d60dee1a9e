"""What the original release's programs import is in both sandboxes (scikit-learn: problems 14, 46)."""
from __future__ import annotations

import pytest

from mtpb.scoring import verdict
from docker_fixtures import open_box

# problem 14 of the original release, solved the way its prompts ask
LINEAR_REGRESSION = """
from sklearn.linear_model import LinearRegression
import math
x = np.arange(0, 11)
def f(v):
    return v * 2
y = np.array([f(v) for v in x])
model = LinearRegression()
model.fit(x.reshape(-1, 1), y.reshape(-1, 1))
x_hat = model.predict([[3]])
print(int(math.ceil(x_hat[0][0] - 1e-9)))
"""


@pytest.mark.parametrize("kind", ["process", pytest.param("docker", marks=pytest.mark.docker)])
def test_scikit_learn_is_in_the_sandbox(kind):
    box = open_box(kind, timeout=60)
    try:
        reply = box.run(["import numpy as np\n" + LINEAR_REGRESSION])[0]
    finally:
        box.close()
    v = verdict(reply, 6, "original")
    assert v.passed, (v.status, v.error, reply.get("stderr"))
