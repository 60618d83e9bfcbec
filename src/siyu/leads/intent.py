"""Comment intent classification for lead intake: rules first, a trained model for the rest.

Intents: ``material`` (求资料/求电子版/同求/蹲), ``purchase`` (多少钱/链接/怎么买/下单),
``question`` (product or usage questions), ``complaint`` (差评/退款/骗人), ``other``.
Spam and ads are folded into ``other``; when a spam rule decided, ``matched_rule``
starts with ``spam:`` so callers can still drop them. A comment with several intents
gets the first of spam > complaint > purchase > material > question, the same order
the labelled set uses. Empty comments are ``other`` with ``matched_rule="empty"``.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from siyu.leads.intent_model import Example, IntentModel, data_path, load_examples, validate_example
from siyu.leads.intent_rules import INTENTS, Intent, RuleMatcher, normalize, rule_text

__all__ = [
    "BASE_CLASSIFIER_FILE",
    "INTENTS",
    "LAYER_DIR",
    "EvalReport",
    "Intent",
    "IntentClassifier",
    "IntentMetrics",
    "IntentResult",
    "classify",
    "classify_many",
    "evaluate",
    "get_classifier",
    "org_classifier",
    "retrain",
    "retrain_org",
]

# A rule's confidence is its precision on the training rows, shrunk towards 0.9
# with the weight of 4 pseudo-rows so a rule seen twice is not "100 % sure".
_RULE_PRIOR_MEAN: Final[float] = 0.9
_RULE_PRIOR_WEIGHT: Final[float] = 4.0
# Rules measured below this precision are ignored and the model decides instead.
DEFAULT_MIN_RULE_PRECISION: Final[float] = 0.75
# An operator's correction counts as this many base rows when refitting the model.
DEFAULT_CORRECTION_WEIGHT: Final[float] = 3.0
_CACHE_FORMAT: Final[int] = 1
#: In the data directory: the shared base classifier, and the organizations' layers (org-<id>.joblib).
BASE_CLASSIFIER_FILE: Final[str] = "intent_classifier.joblib"
LAYER_DIR: Final[str] = "intent_layers"


@dataclass(frozen=True, slots=True)
class IntentResult:
    """Classification of one comment: intent, confidence in [0, 1], and the deciding rule if any."""

    intent: Intent
    confidence: float
    matched_rule: str | None


def _key(normalized: str) -> str:
    return rule_text(normalized) or normalized


class IntentClassifier:
    """Operators' corrections (exact text), then trusted keyword rules, then the model."""

    def __init__(
        self,
        matcher: RuleMatcher,
        model: IntentModel,
        rule_confidence: dict[str, float],
        overrides: dict[str, Intent],
    ) -> None:
        self.matcher = matcher
        self.model = model
        # Only trusted rules are in here; a rule name absent from it defers to the model.
        self.rule_confidence = rule_confidence
        self.overrides = overrides

    @classmethod
    def fit(
        cls,
        examples: Sequence[Example],
        corrections: Sequence[Example] = (),
        *,
        correction_weight: float = DEFAULT_CORRECTION_WEIGHT,
        min_rule_precision: float = DEFAULT_MIN_RULE_PRECISION,
        matcher: RuleMatcher | None = None,
    ) -> IntentClassifier:
        """Train the model on ``examples`` + ``corrections`` and measure each rule's precision on them."""
        if correction_weight <= 0:
            raise ValueError(f"correction_weight must be > 0, got {correction_weight}")
        if not 0.0 <= min_rule_precision <= 1.0:
            raise ValueError(f"min_rule_precision must be in [0, 1], got {min_rule_precision}")
        matcher = RuleMatcher() if matcher is None else matcher
        rows = [*examples, *corrections]
        weights = [1.0] * len(examples) + [correction_weight] * len(corrections)
        model = IntentModel().fit([e.text for e in rows], [e.intent for e in rows], weights)

        fired: Counter[str] = Counter()
        correct: Counter[str] = Counter()
        for ex in rows:
            rule = matcher.match(rule_text(normalize(ex.text)))
            if rule is not None:
                fired[rule.name] += 1
                correct[rule.name] += rule.intent == ex.intent
        confidence: dict[str, float] = {}
        for rule in matcher.rules:
            n = fired[rule.name]
            p = (correct[rule.name] + _RULE_PRIOR_MEAN * _RULE_PRIOR_WEIGHT) / (n + _RULE_PRIOR_WEIGHT)
            if p >= min_rule_precision:
                confidence[rule.name] = round(p, 4)
        # Later corrections of the same comment win.
        overrides = {_key(normalize(e.text)): e.intent for e in corrections}
        return cls(matcher, model, confidence, overrides)

    def classify(self, text: str) -> IntentResult:
        """Classify one comment."""
        return self.classify_many([text])[0]

    def classify_many(self, texts: Iterable[str]) -> list[IntentResult]:
        """Classify many comments; the model runs once, as one batch, on those no rule decided."""
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}] must be str, got {type(t).__name__}")
        results: list[IntentResult | None] = [None] * len(texts)
        pending_idx: list[int] = []
        pending_norm: list[str] = []
        match = self.matcher.match
        overrides = self.overrides
        confidence = self.rule_confidence
        for i, t in enumerate(texts):
            norm = normalize(t)
            if not norm:
                results[i] = IntentResult("other", 1.0, "empty")
                continue
            rt = rule_text(norm)
            fixed = overrides.get(rt or norm) if overrides else None
            if fixed is not None:
                results[i] = IntentResult(fixed, 1.0, "correction")
                continue
            rule = match(rt)
            if rule is not None:
                conf = confidence.get(rule.name)
                if conf is not None:
                    results[i] = IntentResult(rule.intent, conf, rule.name)
                    continue
            pending_idx.append(i)
            pending_norm.append(norm)
        if pending_norm:
            proba = self.model.predict_proba_normalized(pending_norm)
            best = proba.argmax(axis=1)
            classes = self.model.classes
            for row, (i, k) in enumerate(zip(pending_idx, best, strict=True)):
                results[i] = IntentResult(classes[k], float(proba[row, k]), None)
        return results  # type: ignore[return-value]

    def model_only(self, texts: Iterable[str]) -> list[IntentResult]:
        """The model's answer without rules or corrections (for evaluation and benchmarks)."""
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}] must be str, got {type(t).__name__}")
        return [IntentResult(intent, p, None) for intent, p in self.model.predict(texts)]

    def save(self, path: str | Path) -> None:
        """Persist with joblib (pickle): only ever load files this process or you wrote."""
        import joblib  # here, not at the top: see IntentModel.__init__

        joblib.dump({"format": _CACHE_FORMAT, "data": _data_digest(), "classifier": self}, Path(path))

    @staticmethod
    def load(path: str | Path) -> IntentClassifier | None:
        """Load a classifier saved by :meth:`save`; None if missing, stale or from another version."""
        path = Path(path)
        if not path.is_file():
            return None
        try:
            import joblib

            blob = joblib.load(path)
        except Exception:
            return None
        if (
            not isinstance(blob, dict)
            or blob.get("format") != _CACHE_FORMAT
            or blob.get("data") != _data_digest()
            or not isinstance(blob.get("classifier"), IntentClassifier)
        ):
            return None
        return blob["classifier"]


def _data_digest() -> str:
    return hashlib.sha256(data_path().read_bytes()).hexdigest()


_lock = threading.Lock()
_default: IntentClassifier | None = None


def get_classifier(cache_path: str | Path | None = None) -> IntentClassifier:
    """The process-wide classifier, trained on the whole shipped set at first use.

    With ``cache_path`` a saved classifier is loaded from there if it is current,
    and a freshly trained one is saved there.
    """
    global _default
    with _lock:
        if _default is None:
            clf = IntentClassifier.load(cache_path) if cache_path is not None else None
            if clf is None:
                clf = IntentClassifier.fit(load_examples())
                if cache_path is not None:
                    clf.save(cache_path)
            _default = clf
        return _default


def classify(text: str) -> IntentResult:
    """Classify one comment with the process-wide classifier."""
    if not isinstance(text, str):
        raise TypeError(f"comment text must be str, got {type(text).__name__}")
    return get_classifier().classify(text)


def classify_many(texts: Iterable[str]) -> list[IntentResult]:
    """Classify many comments with the process-wide classifier (one model batch)."""
    if isinstance(texts, str):
        raise TypeError("classify_many expects an iterable of comments, not one str")
    return get_classifier().classify_many(texts)


def _corrections(extra_examples: Iterable[tuple[str, str]]) -> list[Example]:
    if isinstance(extra_examples, (str, bytes)):
        raise TypeError("extra_examples must be an iterable of (text, intent) pairs")
    corrections: list[Example] = []
    for i, pair in enumerate(extra_examples):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"extra_examples[{i}] must be a (text, intent) pair, got {pair!r}")
        corrections.append(validate_example(pair[0], pair[1], f"extra_examples[{i}]"))
    return corrections


def retrain(
    extra_examples: Iterable[tuple[str, str]],
    *,
    cache_path: str | Path | None = None,
) -> IntentClassifier:
    """Refit from the shipped set plus ``extra_examples`` (for evaluation and benchmarks; it is not put in
    service: operators' corrections train their own organization's layer, ``retrain_org``)."""
    clf = IntentClassifier.fit(load_examples(), _corrections(extra_examples))
    if cache_path is not None:
        clf.save(cache_path)
    return clf


# One organization's corrections never reach another's results: each organization with corrections gets
# its own layer, the shipped set plus its corrections (exact-text overrides, and the same rows weighted
# into its model), while the shared base, fitted on the shipped set alone, serves everyone else.
_layers: dict[int, IntentClassifier] = {}


def _layer_file(layer_dir: str | Path, org_id: int) -> Path:
    return Path(layer_dir) / f"org-{org_id}.joblib"


def org_classifier(
    org_id: int, *, base_cache: str | Path | None = None, layer_dir: str | Path | None = None
) -> IntentClassifier:
    """The organization's classifier: its layer when it has one (saved in ``layer_dir`` by
    ``retrain_org``), else the shared base."""
    with _lock:
        layer = _layers.get(org_id)
    if layer is None and layer_dir is not None:
        layer = IntentClassifier.load(_layer_file(layer_dir, org_id))
        if layer is not None:
            with _lock:
                layer = _layers.setdefault(org_id, layer)
    return layer if layer is not None else get_classifier(base_cache)


def retrain_org(
    org_id: int, corrections: Iterable[tuple[str, str]], *, layer_dir: str | Path | None = None
) -> IntentClassifier | None:
    """Refit one organization's layer from its own corrections and put it in service (None and the layer
    removed when it has none: it then gets the shared base again)."""
    examples = _corrections(corrections)
    path = _layer_file(layer_dir, org_id) if layer_dir is not None else None
    if not examples:
        with _lock:
            _layers.pop(org_id, None)
        if path is not None:
            path.unlink(missing_ok=True)
        return None
    clf = IntentClassifier.fit(load_examples(), examples)
    if path is not None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        clf.save(path)
    with _lock:
        _layers[org_id] = clf
    return clf


@dataclass(frozen=True, slots=True)
class IntentMetrics:
    """Precision, recall and F1 of one intent on the held-out rows."""

    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True, slots=True)
class EvalReport:
    """Held-out metrics of one way of classifying."""

    name: str
    per_intent: dict[Intent, IntentMetrics]
    macro_f1: float
    accuracy: float
    n_test: int
    rule_coverage: float = 0.0  # share of held-out rows a rule decided
    rule_accuracy: float = field(default=float("nan"))  # accuracy on those rows


def _report(name: str, truth: list[str], results: list[IntentResult]) -> EvalReport:
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support  # see IntentModel.__init__

    pred = [r.intent for r in results]
    p, r, f, s = precision_recall_fscore_support(truth, pred, labels=list(INTENTS), zero_division=0)
    per = {
        intent: IntentMetrics(float(p[k]), float(r[k]), float(f[k]), int(s[k]))
        for k, intent in enumerate(INTENTS)
    }
    ruled = [(t, res.intent) for t, res in zip(truth, results, strict=True) if res.matched_rule]
    return EvalReport(
        name=name,
        per_intent=per,
        macro_f1=float(f.mean()),
        accuracy=float(accuracy_score(truth, pred)),
        n_test=len(truth),
        rule_coverage=len(ruled) / len(truth),
        rule_accuracy=(sum(t == p_ for t, p_ in ruled) / len(ruled)) if ruled else float("nan"),
    )


def evaluate(path: Path | None = None) -> tuple[EvalReport, EvalReport, IntentClassifier]:
    """Fit on the training split only and score rules+model and the model alone on the held-out split."""
    clf = IntentClassifier.fit(load_examples(path, "train"))
    test = load_examples(path, "test")
    texts = [e.text for e in test]
    truth: list[str] = [e.intent for e in test]
    return (
        _report("rules+model", truth, clf.classify_many(texts)),
        _report("model_only", truth, clf.model_only(texts)),
        clf,
    )
