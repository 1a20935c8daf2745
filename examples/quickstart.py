"""Quickstart: a small but real ML pipeline in plain Python.

It makes a two-class dataset, splits it, trains a logistic-regression model by
gradient descent, evaluates it on the held-out part and reports the metrics.
Nothing beyond the standard library is needed, so it runs anywhere flowyml does:

    flowyml run examples/quickstart.py:pipeline
    flowyml run examples/quickstart.py:pipeline --param learning_rate=0.3 --param epochs=300

Run it twice: the second run is fully cached. Change a parameter and only the
steps that receive it (and those downstream of them) run again.
"""

from __future__ import annotations

import math
import random

from flowyml_core import Context, Pipeline, step

Rows = list[list[float]]


@step(outputs=["features", "labels"])
def make_dataset(n_samples: int, seed: int) -> tuple[Rows, list[int]]:
    """Two overlapping Gaussian blobs in 2-D, labelled 0 and 1."""
    rng = random.Random(seed)
    features: Rows = []
    labels: list[int] = []
    for i in range(n_samples):
        label = i % 2
        centre = (1.0, 1.0) if label else (-1.0, -1.0)
        features.append([rng.gauss(centre[0], 1.2), rng.gauss(centre[1], 1.2)])
        labels.append(label)
    return features, labels


@step(inputs=["features", "labels"], outputs=["train_set", "test_set"])
def split(features: Rows, labels: list[int], test_fraction: float, seed: int) -> tuple[dict, dict]:
    """Shuffle and hold out ``test_fraction`` of the rows for evaluation."""
    order = list(range(len(labels)))
    random.Random(seed + 1).shuffle(order)
    cut = int(len(order) * (1 - test_fraction))

    def take(idx: list[int]) -> dict:
        return {"x": [features[i] for i in idx], "y": [labels[i] for i in idx]}

    return take(order[:cut]), take(order[cut:])


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _predict(model: dict, row: list[float]) -> float:
    return _sigmoid(model["bias"] + sum(w * v for w, v in zip(model["weights"], row)))


@step(inputs=["train_set"], outputs=["model"])
def train(train_set: dict, learning_rate: float, epochs: int) -> dict:
    """Logistic regression by full-batch gradient descent on the log-loss."""
    xs, ys = train_set["x"], train_set["y"]
    n, dims = len(ys), len(xs[0])
    weights, bias = [0.0] * dims, 0.0
    loss = float("nan")
    for _ in range(epochs):
        grad_w, grad_b, loss = [0.0] * dims, 0.0, 0.0
        for row, y in zip(xs, ys):
            p = _sigmoid(bias + sum(w * v for w, v in zip(weights, row)))
            err = p - y
            for j in range(dims):
                grad_w[j] += err * row[j]
            grad_b += err
            loss -= math.log(max(p, 1e-12)) if y else math.log(max(1 - p, 1e-12))
        weights = [w - learning_rate * g / n for w, g in zip(weights, grad_w)]
        bias -= learning_rate * grad_b / n
        loss /= n
    print(f"trained {epochs} epochs, final training log-loss {loss:.4f}")
    return {"weights": weights, "bias": bias, "train_loss": loss}


@step(inputs=["model", "test_set"], outputs=["metrics"])
def evaluate(model: dict, test_set: dict) -> dict:
    """Accuracy, precision, recall and log-loss on the held-out rows."""
    tp = fp = tn = fn = 0
    loss = 0.0
    for row, y in zip(test_set["x"], test_set["y"]):
        p = _predict(model, row)
        loss -= math.log(max(p, 1e-12)) if y else math.log(max(1 - p, 1e-12))
        guess = int(p >= 0.5)
        tp += guess and y
        fp += guess and not y
        tn += (not guess) and (not y)
        fn += (not guess) and y
    n = len(test_set["y"])
    return {
        "accuracy": round((tp + tn) / n, 4),
        "precision": round(tp / (tp + fp), 4) if tp + fp else 0.0,
        "recall": round(tp / (tp + fn), 4) if tp + fn else 0.0,
        "log_loss": round(loss / n, 4),
        "test_rows": n,
    }


@step(inputs=["metrics", "model"], outputs=["report"])
def report(metrics: dict, model: dict) -> str:
    """A one-paragraph, human-readable summary (also printed into the step's log)."""
    text = (
        f"accuracy {metrics['accuracy']:.1%} on {metrics['test_rows']} held-out rows "
        f"(precision {metrics['precision']:.2f}, recall {metrics['recall']:.2f}, "
        f"log-loss {metrics['log_loss']:.3f}); "
        f"weights {[round(w, 3) for w in model['weights']]}, bias {model['bias']:.3f}"
    )
    print(text)
    return text


pipeline = Pipeline(
    "quickstart",
    steps=[make_dataset, split, train, evaluate, report],
    context=Context(n_samples=400, seed=7, test_fraction=0.25, learning_rate=0.5, epochs=150),
)


if __name__ == "__main__":
    result = pipeline.run()
    print(result.outputs["report"])
