"""Tests of the evaluation metrics against hand-computed values and a literal reference.

The ``Reference*`` helpers below restate the starter code's definitions as
plain loops and heaps (without its seeded shuffle, so inputs must have no
ties); the vectorized metrics must agree with them to 1e-9.
"""

import heapq

import numpy as np
import pytest

from youtube8m_willow import average_precision_calculator as legacy_ap
from youtube8m_willow import eval_util as legacy_eval_util
from youtube8m_willow import mean_average_precision_calculator as legacy_map
from youtube8m_willow.metrics.average_precision_calculator import rank_descending
from youtube8m_willow.metrics import (
    AveragePrecisionCalculator, EvaluationMetrics, MeanAveragePrecisionCalculator,
    calculate_gap, calculate_hit_at_one, calculate_precision_at_equal_recall_rate, flatten,
    top_k_by_class, top_k_triplets)

TOL = 1e-9


# --------------------------------------------------------------------------
# Literal reference (loops and heaps, one item at a time).
# --------------------------------------------------------------------------

def reference_ap_at_n(predictions, actuals, n=None, total_num_positives=None):
    """AP@n by walking the list sorted best first, one item at a time."""
    ranked = sorted(zip(predictions, actuals), key=lambda item: item[0], reverse=True)
    numpos = (sum(1 for a in actuals if a > 0) if total_num_positives is None
              else total_num_positives)
    if numpos == 0:
        return 0.0
    if n is not None:
        numpos = min(numpos, n)
        ranked = ranked[:n]
    delta_recall = 1.0 / numpos
    ap, poscount = 0.0, 0.0
    for i, (_, actual) in enumerate(ranked):
        if actual > 0:
            poscount += 1
            ap += poscount / (i + 1) * delta_recall
    return ap


class ReferenceAP:
    """A min-heap of (prediction, actual) holding the top_n items seen."""

    def __init__(self, top_n=None):
        self.top_n, self.heap, self.total_positives = top_n, [], 0

    def accumulate(self, predictions, actuals, num_positives=None):
        if num_positives is None:
            num_positives = sum(1 for a in actuals if a > 0)
        self.total_positives += num_positives
        for item in zip((float(p) for p in predictions), (float(a) for a in actuals)):
            if self.top_n is None or len(self.heap) < self.top_n:
                heapq.heappush(self.heap, item)
            elif item[0] > self.heap[0][0]:
                heapq.heapreplace(self.heap, item)

    def peek(self):
        if not self.heap:
            return 0.0
        return reference_ap_at_n([p for p, _ in self.heap], [a for _, a in self.heap],
                                 self.top_n, self.total_positives)


def reference_hit_at_one(predictions, actuals):
    hits = []
    for row, labels in zip(predictions, actuals):
        best = max(range(len(row)), key=lambda j: (row[j], -j))
        hits.append(labels[best])
    # The original averages with numpy in the labels' dtype (float32 rounds).
    return float(np.average(np.array(hits, dtype=np.asarray(actuals).dtype)))


def reference_perr(predictions, actuals):
    total = 0.0
    for row, labels in zip(predictions, actuals):
        num_labels = int(sum(labels))
        ranked = sorted(range(len(row)), key=lambda j: row[j], reverse=True)
        # A video without labels: the original's slice [-0:] keeps every class.
        top = ranked[:num_labels] if num_labels else ranked
        precision = 0.0
        for j in top:
            if row[j] > 0:
                precision += float(labels[j])
        total += precision / len(top)
    return total / len(predictions)


def reference_top_k_by_class(predictions, actuals, k):
    num_classes = len(predictions[0])
    out_predictions = [[] for _ in range(num_classes)]
    out_labels = [[] for _ in range(num_classes)]
    for row, labels in zip(predictions, actuals):
        for j in sorted(range(num_classes), key=lambda j: row[j], reverse=True)[:k]:
            out_predictions[j].append(row[j])
            out_labels[j].append(labels[j])
    # Counted in Python floats: the original's 2017 NumPy promoted to float64.
    positives = [sum(float(labels[j]) for labels in actuals) for j in range(num_classes)]
    return out_predictions, out_labels, positives


def reference_gap(predictions, actuals, top_k):
    calculator = ReferenceAP()
    preds, labels, positives = reference_top_k_by_class(predictions, actuals, top_k)
    calculator.accumulate(flatten(preds), flatten(labels), sum(positives))
    return calculator.peek()


class ReferenceEvaluationMetrics:
    """The starter code's EvaluationMetrics: one heap per class plus one global heap."""

    def __init__(self, num_class, top_k):
        self.top_k = top_k
        self.class_heaps = [ReferenceAP() for _ in range(num_class)]
        self.global_heap = ReferenceAP()
        self.sums = {"hit_at_one": 0.0, "perr": 0.0, "loss": 0.0}
        self.num_examples = 0

    def accumulate(self, predictions, labels, loss):
        batch = {"hit_at_one": reference_hit_at_one(predictions, labels),
                 "perr": reference_perr(predictions, labels),
                 "loss": float(np.mean(loss))}
        preds, kept, positives = reference_top_k_by_class(predictions, labels, self.top_k)
        for heap, p, a, n in zip(self.class_heaps, preds, kept, positives):
            heap.accumulate(p, a, n)
        self.global_heap.accumulate(flatten(preds), flatten(kept), sum(positives))
        self.num_examples += len(labels)
        for key, value in batch.items():
            self.sums[key] += value * len(labels)
        return batch

    def get(self):
        aps = [heap.peek() for heap in self.class_heaps]
        has_labels = [heap.total_positives > 0 for heap in self.class_heaps]
        positive_aps = [ap for ap, keep in zip(aps, has_labels) if keep]
        return {"avg_" + key: value / self.num_examples for key, value in self.sums.items()} | {
            "aps": aps, "gap": self.global_heap.peek(),
            "map_all_classes": sum(aps) / len(aps),
            "map_positive_classes": sum(positive_aps) / max(len(positive_aps), 1)}


def random_batch(rng, batch_size, num_classes, dtype=np.float64):
    """Continuous predictions (no ties) and sparse labels (0 to 4 per video)."""
    predictions = rng.random((batch_size, num_classes)).astype(dtype)
    labels = np.zeros((batch_size, num_classes), dtype=dtype)
    # Classes beyond num_classes - 3 never get labels (classes without positives).
    for row, count in enumerate(rng.integers(0, 5, batch_size)):
        labels[row, rng.choice(num_classes - 3, count, replace=False)] = 1
    # Make some labels likely to be in the top-k.
    boost = (labels > 0) & (rng.random(labels.shape) < 0.5)
    predictions[boost] = 0.5 + predictions[boost] / 2
    assert np.unique(predictions).size == predictions.size
    return predictions, labels


# --------------------------------------------------------------------------
# Hand-computed cases.
# --------------------------------------------------------------------------

class TestAveragePrecisionByHand:

    def test_ap_of_whole_list(self):
        # Ranked: 0.9(+) 0.8(-) 0.7(+) 0.6(-): precisions 1/1 and 2/3 over 2 positives.
        ap = AveragePrecisionCalculator.ap(np.array([0.6, 0.9, 0.7, 0.8]),
                                           np.array([0, 1, 1, 0]))
        assert ap == pytest.approx((1 + 2 / 3) / 2, abs=TOL)

    def test_ap_at_n_cuts_list_and_denominator(self):
        # Top 2: 0.9(+) 0.8(-): precision 1 at rank 1, denominator min(2, 2) = 2.
        p, a = np.array([0.6, 0.9, 0.7, 0.8]), np.array([0, 1, 1, 0])
        assert AveragePrecisionCalculator.ap_at_n(p, a, n=2) == pytest.approx(0.5, abs=TOL)
        # Top 1: one positive in one item, denominator min(2, 1) = 1.
        assert AveragePrecisionCalculator.ap_at_n(p, a, n=1) == pytest.approx(1.0, abs=TOL)

    def test_total_num_positives_is_the_denominator(self):
        # Same list, but 4 positives exist overall: (1 + 2/3) / 4.
        ap = AveragePrecisionCalculator.ap_at_n(np.array([0.6, 0.9, 0.7, 0.8]),
                                                np.array([0, 1, 1, 0]), n=None,
                                                total_num_positives=4)
        assert ap == pytest.approx(5 / 12, abs=TOL)

    def test_no_positives_gives_zero(self):
        assert AveragePrecisionCalculator.ap(np.array([0.3, 0.2]), np.array([0, 0])) == 0

    def test_accumulate_with_top_n(self):
        # Items: 0.1(+) 0.9(-) 0.8(+) 0.3(+); 3 positives counted.
        # Top 2 kept: 0.9(-) 0.8(+): precision 1/2 at rank 2, denominator min(3, 2) = 2.
        calculator = AveragePrecisionCalculator(top_n=2)
        calculator.accumulate(np.array([0.1, 0.9]), np.array([1, 0]))
        calculator.accumulate(np.array([0.8, 0.3]), np.array([1, 1]))
        assert calculator.heap_size == 2
        assert calculator.num_accumulated_positives == 3
        assert calculator.peek_ap_at_n() == pytest.approx(0.25, abs=TOL)

    def test_num_positives_overrides_count(self):
        # One positive ranked first, but 5 positives exist: 1/1 / 5.
        calculator = AveragePrecisionCalculator()
        calculator.accumulate(np.array([0.5, 0.2]), np.array([1, 0]), num_positives=5)
        assert calculator.num_accumulated_positives == 5
        assert calculator.peek_ap_at_n() == pytest.approx(0.2, abs=TOL)
        # num_positives=0 adds nothing, the items still join the list.
        calculator.accumulate(np.array([0.9]), np.array([0]), num_positives=0)
        assert calculator.heap_size == 3
        assert calculator.peek_ap_at_n() == pytest.approx(0.5 / 5, abs=TOL)

    def test_empty_and_cleared_calculator(self):
        calculator = AveragePrecisionCalculator()
        assert calculator.peek_ap_at_n() == 0
        calculator.accumulate(np.array([0.4]), np.array([1]))
        assert calculator.peek_ap_at_n() == pytest.approx(1.0)
        calculator.clear()
        assert calculator.heap_size == 0 and calculator.num_accumulated_positives == 0
        assert calculator.peek_ap_at_n() == 0

    def test_ties_keep_order_of_arrival(self):
        # Tied at 0.5: the first item ranks first.
        tied = np.array([0.5, 0.5])
        assert AveragePrecisionCalculator.ap(tied, np.array([0, 1])) == pytest.approx(0.5)
        assert AveragePrecisionCalculator.ap(tied, np.array([1, 0])) == pytest.approx(1.0)

    def test_mean_average_precision(self):
        # Class 0: 0.9(-) 0.3(+): precision 1/2; class 1: no positive.
        calculator = MeanAveragePrecisionCalculator(num_class=2)
        assert calculator.is_empty()
        calculator.accumulate([[0.3, 0.9], [0.5]], [[1, 0], [0]])
        assert not calculator.is_empty()
        assert calculator.peek_map_at_n() == pytest.approx([0.5, 0.0], abs=TOL)
        # Two more positives of class 0 exist elsewhere: (1/2) / 3.
        calculator.clear()
        calculator.accumulate([[0.3, 0.9], [0.5]], [[1, 0], [0]], num_positives=[3, 0])
        assert calculator.peek_map_at_n() == pytest.approx([1 / 6, 0.0], abs=TOL)
        calculator.clear()
        assert calculator.is_empty() and calculator.peek_map_at_n() == [0.0, 0.0]


class TestEvalUtilByHand:
    # Video 0: labels {1, 2}; video 1: label {0}; class 3 never labelled.
    PREDICTIONS = np.array([[0.9, 0.8, 0.1, 0.05], [0.7, 0.2, 0.6, 0.01]])
    LABELS = np.array([[0, 1, 1, 0], [1, 0, 0, 0]], dtype=np.float32)

    def test_hit_at_one(self):
        # argmax: video 0 -> class 0 (negative), video 1 -> class 0 (positive).
        assert calculate_hit_at_one(self.PREDICTIONS, self.LABELS) == pytest.approx(0.5)

    def test_perr(self):
        # Video 0: top 2 = {0, 1}, one positive: 1/2; video 1: top 1 = {0}: 1.
        perr = calculate_precision_at_equal_recall_rate(self.PREDICTIONS, self.LABELS)
        assert perr == pytest.approx(0.75, abs=TOL)

    def test_perr_no_labels_and_zero_predictions(self):
        predictions = np.array([[0.9, 0.8, 0.1, 0.05],   # labels {0, 2}: top 2 {0, 1} -> 1/2
                                [0.9, 0.8, 0.1, 0.05],   # no labels -> 0
                                [0.0, 0.0, 0.0, 0.0],    # label {3}, prediction 0 -> 0
                                [0.2, 0.6, 0.1, 0.3]])   # label {1}: top 1 {1} -> 1
        labels = np.array([[1, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1], [0, 1, 0, 0]])
        perr = calculate_precision_at_equal_recall_rate(predictions, labels)
        assert perr == pytest.approx((0.5 + 0 + 0 + 1) / 4, abs=TOL)

    def test_gap(self):
        # Top 2 kept: 0.9(-) 0.8(+) | 0.7(+) 0.6(-); 3 labels in all (one not kept).
        # Ranked 0.9(-) 0.8(+) 0.7(+) 0.6(-): (1/2 + 2/3) / 3 = 7/18.
        gap = calculate_gap(self.PREDICTIONS, self.LABELS, top_k=2)
        assert gap == pytest.approx(7 / 18, abs=TOL)
        # top_k larger than the class count keeps everything: ranks 2, 3, 5 positive.
        gap_all = calculate_gap(self.PREDICTIONS, self.LABELS, top_k=10)
        assert gap_all == pytest.approx((1 / 2 + 2 / 3 + 3 / 6) / 3, abs=TOL)

    def test_top_k_by_class(self):
        predictions, labels, positives = top_k_by_class(self.PREDICTIONS, self.LABELS, k=2)
        assert [list(p) for p in predictions] == [[0.9, 0.7], [0.8], [0.6], []]
        assert [list(l) for l in labels] == [[0, 1], [1], [0], []]
        assert positives == [1, 1, 1, 0]

    def test_top_k_triplets(self):
        triplets = sorted(top_k_triplets(self.PREDICTIONS[1], self.LABELS[1], k=2))
        assert [(i, float(p), float(l)) for i, p, l in triplets] == [(0, 0.7, 1.0), (2, 0.6, 0.0)]

    def test_evaluation_metrics(self):
        metrics = EvaluationMetrics(num_class=4, top_k=2)
        # One video per batch: batch 0 hit@1 0, PERR 1/2; batch 1 hit@1 1, PERR 1.
        first = metrics.accumulate(self.PREDICTIONS[:1], self.LABELS[:1], np.array([1.0]))
        assert first == pytest.approx({"hit_at_one": 0.0, "perr": 0.5, "loss": 1.0})
        metrics.accumulate(self.PREDICTIONS[1:], self.LABELS[1:], np.array([2.0]))
        result = metrics.get()
        assert result["avg_hit_at_one"] == pytest.approx(0.5)
        assert result["avg_perr"] == pytest.approx(0.75)
        assert result["avg_loss"] == pytest.approx(1.5)
        assert result["gap"] == pytest.approx(7 / 18, abs=TOL)
        # Class 0: 0.9(-) 0.7(+), 1 label: 1/2. Class 1: 0.8(+): 1.
        # Class 2: 0.6(-) kept, its label (0.1) not kept: 0. Class 3: no label: 0.
        assert result["aps"] == pytest.approx([0.5, 1.0, 0.0, 0.0], abs=TOL)
        assert result["map_all_classes"] == pytest.approx(1.5 / 4, abs=TOL)
        assert result["map_positive_classes"] == pytest.approx(1.5 / 3, abs=TOL)

    def test_clear_and_empty_get(self):
        metrics = EvaluationMetrics(num_class=4, top_k=2)
        with pytest.raises(ValueError, match="total_sample must be positive"):
            metrics.get()
        metrics.accumulate(self.PREDICTIONS, self.LABELS, 1.0)
        metrics.clear()
        with pytest.raises(ValueError, match="total_sample must be positive"):
            metrics.get()
        metrics.accumulate(self.PREDICTIONS[1:], self.LABELS[1:], 3.0)
        assert metrics.get()["gap"] == pytest.approx(1.0)


class TestValidation:

    @pytest.mark.parametrize("top_n", [-1, 0, 1.5, "3", True])
    def test_bad_top_n(self, top_n):
        with pytest.raises(ValueError, match="top_n must be a positive integer or None"):
            AveragePrecisionCalculator(top_n)

    def test_length_mismatch(self):
        calculator = AveragePrecisionCalculator()
        with pytest.raises(ValueError, match="shape of predictions and actuals"):
            calculator.accumulate(np.array([0.1, 0.2]), np.array([1]))
        with pytest.raises(ValueError, match="shape of predictions and actuals"):
            AveragePrecisionCalculator.ap(np.array([0.1]), np.array([1, 0]))

    @pytest.mark.parametrize("num_positives", [-1, "2", [1]])
    def test_bad_num_positives(self, num_positives):
        with pytest.raises(ValueError, match="num_positives"):
            AveragePrecisionCalculator().accumulate(np.array([0.1]), np.array([1]),
                                                    num_positives=num_positives)

    @pytest.mark.parametrize("n", [0, -2, 2.5])
    def test_bad_n(self, n):
        with pytest.raises(ValueError, match="n must be 'None' or a positive integer"):
            AveragePrecisionCalculator.ap_at_n(np.array([0.1]), np.array([1]), n=n)

    @pytest.mark.parametrize("num_class", [1, 0, 2.0])
    def test_bad_num_class(self, num_class):
        with pytest.raises(ValueError, match="num_class"):
            MeanAveragePrecisionCalculator(num_class)
        with pytest.raises(ValueError, match="num_class"):
            EvaluationMetrics(num_class, top_k=20)

    def test_mean_average_precision_bad_inputs(self):
        calculator = MeanAveragePrecisionCalculator(2)
        with pytest.raises(ValueError, match="more than num_class"):
            calculator.accumulate([[0.1], [0.2], [0.3]], [[1], [0], [0]])
        with pytest.raises(ValueError, match="shape of predictions and actuals"):
            calculator.accumulate([[0.1, 0.2], [0.3]], [[1], [0]])
        with pytest.raises(ValueError, match="num_positives"):
            calculator.accumulate([[0.1], [0.3]], [[1], [0]], num_positives=[1, -2])
        with pytest.raises(ValueError, match="class ids"):
            calculator.accumulate_sparse([0, 2], [0.1, 0.2], [1, 0], [1, 0])
        assert calculator.is_empty()

    def test_bad_k(self):
        predictions = np.array([[0.1, 0.2]])
        with pytest.raises(ValueError, match="k must be a positive integer"):
            top_k_by_class(predictions, predictions, k=0)
        with pytest.raises(ValueError, match="k must be a positive integer"):
            calculate_gap(predictions, predictions, top_k=-1)
        with pytest.raises(ValueError, match="k must be a positive integer"):
            EvaluationMetrics(2, top_k=0)

    def test_shape_mismatch(self):
        with pytest.raises(ValueError, match="same shape"):
            calculate_hit_at_one(np.zeros((2, 3)), np.zeros((2, 4)))
        with pytest.raises(ValueError, match="expected 3 classes"):
            EvaluationMetrics(3, top_k=2).accumulate(np.zeros((2, 4)), np.zeros((2, 4)), 0.0)


# --------------------------------------------------------------------------
# Randomized comparison with the literal reference.
# --------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(3))
def test_batch_metrics_match_reference(seed):
    rng = np.random.default_rng(seed)
    predictions, labels = random_batch(rng, batch_size=40, num_classes=30)
    assert calculate_hit_at_one(predictions, labels) == pytest.approx(
        reference_hit_at_one(predictions, labels), abs=TOL)
    assert calculate_precision_at_equal_recall_rate(predictions, labels) == pytest.approx(
        reference_perr(predictions, labels), abs=TOL)
    for top_k in (1, 5, 30, 50):
        assert calculate_gap(predictions, labels, top_k) == pytest.approx(
            reference_gap(predictions, labels, top_k), abs=TOL)


def test_top_k_by_class_matches_reference():
    predictions, labels = random_batch(np.random.default_rng(7), 25, 12)
    got = top_k_by_class(predictions, labels, k=4)
    expected = reference_top_k_by_class(predictions, labels, k=4)
    for got_lists, expected_lists in zip(got[:2], expected[:2]):
        assert [list(x) for x in got_lists] == expected_lists
    assert got[2] == expected[2]


@pytest.mark.parametrize("top_n", [None, 1, 7, 500])
def test_ap_calculator_matches_reference_heap(top_n):
    rng = np.random.default_rng(11)
    calculator, reference = AveragePrecisionCalculator(top_n), ReferenceAP(top_n)
    for size in (0, 13, 200, 1):
        predictions, actuals = rng.random(size), rng.integers(0, 2, size)
        num_positives = None if size % 2 else int(rng.integers(0, 5))
        calculator.accumulate(predictions, actuals, num_positives)
        reference.accumulate(predictions, actuals, num_positives)
        assert calculator.heap_size == len(reference.heap)
        assert calculator.peek_ap_at_n() == pytest.approx(reference.peek(), abs=TOL)


def test_ap_calculator_compaction_matches_reference_heap():
    # Enough items to make the calculator drop those below its top_n.
    rng = np.random.default_rng(3)
    calculator, reference = AveragePrecisionCalculator(top_n=50), ReferenceAP(top_n=50)
    for _ in range(4):
        predictions, actuals = rng.random(20000), rng.random(20000) < 0.01
        calculator.accumulate(predictions, actuals)
        reference.accumulate(predictions, actuals)
    assert calculator.heap_size == 50
    assert calculator.peek_ap_at_n() == pytest.approx(reference.peek(), abs=TOL)


def test_mean_average_precision_compaction_matches_reference():
    # A 2-D array [classes, items], large enough for the calculator to compact.
    rng = np.random.default_rng(8)
    calculator = MeanAveragePrecisionCalculator(2, top_n=30)
    references = [ReferenceAP(30), ReferenceAP(30)]
    for _ in range(3):
        predictions, actuals = rng.random((2, 15000)), rng.random((2, 15000)) < 0.02
        calculator.accumulate(predictions, actuals)
        for reference, p, a in zip(references, predictions, actuals):
            reference.accumulate(p, a)
    expected = [reference.peek() for reference in references]
    assert calculator.peek_map_at_n() == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize("top_n", [None, 3])
def test_mean_average_precision_matches_reference(top_n):
    rng = np.random.default_rng(5)
    num_class = 6
    calculator = MeanAveragePrecisionCalculator(num_class, top_n=top_n)
    references = [ReferenceAP(top_n) for _ in range(num_class)]
    for _ in range(3):
        sizes = rng.integers(0, 9, num_class)
        predictions = [rng.random(size) for size in sizes]
        actuals = [rng.integers(0, 2, size) for size in sizes]
        num_positives = [int(rng.integers(0, 4)) for _ in sizes]
        calculator.accumulate(predictions, actuals, num_positives)
        for reference, p, a, n in zip(references, predictions, actuals, num_positives):
            reference.accumulate(p, a, n)
    expected = [reference.peek() for reference in references]
    assert calculator.peek_map_at_n() == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_evaluation_metrics_match_reference(dtype):
    rng = np.random.default_rng(17)
    num_class, top_k = 30, 5
    metrics = EvaluationMetrics(num_class, top_k)
    reference = ReferenceEvaluationMetrics(num_class, top_k)
    for batch_size in (16, 40, 1, 23):
        predictions, labels = random_batch(rng, batch_size, num_class, dtype)
        loss = rng.random(batch_size).astype(dtype)
        got = metrics.accumulate(predictions, labels, loss)
        expected = reference.accumulate(predictions, labels, loss)
        assert got == pytest.approx(expected, abs=TOL)
    got, expected = metrics.get(), reference.get()
    assert set(got) == set(expected) | {"num_positive_classes"}
    assert got["num_positive_classes"] == 27  # classes 27..29 have no positives
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=TOL), key
    assert got["map_all_classes"] < got["map_positive_classes"]  # classes 27..29 are empty


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_top_k_ties_at_the_cut_off_keep_lower_classes(dtype):
    # Top 3 of each row (values exact in float32):
    # row 0: 0.875 (class 1), then 0.5 tied in classes 0, 2, 3 for two places: 0 and 2;
    # row 1 (negative values, no integer shortcut): 0.25 (class 2), then -0.5 tied
    #   in classes 1, 3, 4 for two places: 1 and 3;
    # row 2: 0.625, 0.5, 0.375 (classes 4, 3, 2).
    predictions = np.array([[0.5, 0.875, 0.5, 0.5, 0.125],
                            [-1.0, -0.5, 0.25, -0.5, -0.5],
                            [0.125, 0.25, 0.375, 0.5, 0.625]], dtype=dtype)
    kept, _, _ = top_k_by_class(predictions, np.zeros_like(predictions), k=3)
    assert [x.tolist() for x in kept] == [[0.5], [0.875, -0.5], [0.5, 0.25, 0.375],
                                          [-0.5, 0.5], [0.625]]


def test_top_k_with_nan_does_not_crash():
    predictions = np.array([[np.nan, -1.0, 0.5, 0.2], [0.1, 0.4, 0.3, 0.2]], dtype=np.float32)
    kept, _, _ = top_k_by_class(predictions, np.zeros_like(predictions), k=2)
    assert sum(len(x) for x in kept) == 4


def test_large_batch_top_k_matches_argpartition_without_ties():
    rng = np.random.default_rng(4)
    predictions = rng.random((300, 500)).astype(np.float32)
    predictions[:, 7] = 0.0  # zeros, many of them, never in the top 20
    kept, _, _ = top_k_by_class(predictions, np.zeros_like(predictions), k=20)
    expected = np.zeros(500, dtype=int)
    for row in predictions:
        assert np.unique(row[np.argpartition(row, -21)[-21:]]).size == 21  # no tie at cut-off
        expected[np.argpartition(row, -20)[-20:]] += 1
    assert [len(x) for x in kept] == expected.tolist()


def test_tie_rule_is_order_of_arrival():
    # Classes 0 and 1 tie at 0.5 in both videos, class 2 is never kept (top 2).
    predictions = np.array([[0.5, 0.5, 0.1], [0.5, 0.5, 0.1]])
    labels = np.array([[0, 1, 0], [1, 0, 0]])
    # Arrival order: video 0 class 0 (-), class 1 (+), video 1 class 0 (+), class 1 (-):
    # (1/2 + 2/3) / 2 labels.
    assert calculate_gap(predictions, labels, top_k=2) == pytest.approx(7 / 12, abs=TOL)
    metrics = EvaluationMetrics(num_class=3, top_k=2)
    # PERR: the top 1 among tied classes is the lower class index: video 0 misses.
    assert metrics.accumulate(predictions, labels, 0.0)["perr"] == pytest.approx(0.5)
    # Class 0: video 0 (-), video 1 (+): 1/2. Class 1: video 0 (+): 1.
    assert metrics.get()["aps"] == pytest.approx([0.5, 1.0, 0.0], abs=TOL)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_rank_descending_is_a_stable_descending_sort(dtype):
    rng = np.random.default_rng(1)
    if dtype == np.int32:
        values = rng.integers(-5, 5, 200).astype(dtype)  # many ties
    else:  # ties, signed zeros and infinities
        values = np.concatenate([np.round(rng.normal(size=200) * 4) / 4,
                                 [0.0, -0.0, np.inf, -np.inf]]).astype(dtype)
        rng.shuffle(values)
    # Python's sort is stable: ties keep their positions' order.
    expected = sorted(range(values.size), key=lambda i: -float(values[i]))
    assert rank_descending(values).tolist() == expected


def test_all_zero_predictions():
    # PERR counts only positives with a prediction > 0; hit@1 takes class 0.
    labels = np.eye(4, 6)
    assert calculate_precision_at_equal_recall_rate(np.zeros((4, 6)), labels) == 0.0
    assert calculate_hit_at_one(np.zeros((4, 6)), labels) == pytest.approx(0.25)


def test_legacy_module_names():
    assert legacy_ap.AveragePrecisionCalculator is AveragePrecisionCalculator
    assert legacy_map.MeanAveragePrecisionCalculator is MeanAveragePrecisionCalculator
    assert legacy_eval_util.EvaluationMetrics is EvaluationMetrics
    assert legacy_eval_util.calculate_gap is calculate_gap
