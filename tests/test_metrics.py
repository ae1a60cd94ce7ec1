import math

import numpy as np
import pytest

from hopnet.metrics import classifier_metrics, regression_metrics


def test_regression_metrics_known_values():
    m = regression_metrics([0.0, 1.0, 2.0, 3.0], [0.5, 1.0, 2.0, 2.5])
    assert m["n"] == 4
    assert m["mae"] == pytest.approx(0.25)
    assert m["rmse"] == pytest.approx(math.sqrt(0.125))
    assert m["r2"] == pytest.approx(1 - 0.5 / 5.0)
    assert m["spearman"] == pytest.approx(1.0)


def test_regression_metrics_length_mismatch():
    with pytest.raises(ValueError, match="differ in length"):
        regression_metrics([1, 2], [1])


def test_classifier_metrics_confusion():
    # true: good good poor poor ; predicted: good poor poor good
    m = classifier_metrics([0.2, 0.3, 0.9, 1.2], [0.1, 0.8, 1.0, 0.4], threshold=0.65)
    assert m["threshold"] == 0.65
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["precision_good"] == pytest.approx(0.5)
    assert m["recall_good"] == pytest.approx(0.5)
    assert m["precision_poor"] == pytest.approx(0.5)
    assert m["recall_poor"] == pytest.approx(0.5)


def test_classifier_threshold_is_strict():
    m = classifier_metrics(np.array([0.65]), np.array([0.65]))
    assert m["recall_poor"] == 1.0 and math.isnan(m["recall_good"])
