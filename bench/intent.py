"""Throughput of comment intent classification on one core, with held-out quality.

Run: python bench/intent.py [--quick] [--n N] [--seed S]

Classifies N comments (default 200,000; 20,000 with --quick) sampled with
replacement from the labelled set, each with seeded random noise (emoji, spaces,
full-width letters, traditional characters, @mentions, two comments glued).
Baselines measured in the same run on the same comments:
  naive_in_scan  the same classifier, but keywords found by looping over every
                 pattern with `in`/str.find instead of one Aho-Corasick pass
                 (identical answers, checked);
  model_only     the TF-IDF + logistic-regression model alone, no rules (its
                 held-out quality is printed too, since its answers differ).
The last line is comments_per_s=N for rules+model.
"""

from __future__ import annotations

import os

# One core: BLAS/OpenMP pools must be limited before numpy/scipy/sklearn load.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402

from threadpoolctl import threadpool_limits  # noqa: E402

from siyu.leads.intent import EvalReport, IntentClassifier, IntentResult, evaluate, get_classifier  # noqa: E402
from siyu.leads.intent_model import load_examples  # noqa: E402
from siyu.leads.intent_rules import _T2S_TABLE, Hit, NegationCue, Rule, normalize, resolve, rule_text  # noqa: E402

_S2T = {v: k for k, v in _T2S_TABLE.items()}
_EMOJI = ["🙏", "😭", "😂", "❤️", "👍", "🔥", "[捂脸]", "[祈祷]", "～", "!!", "？？", "。。。"]
_PREFIX = ["@小红 ", "@用户8866 ", "博主 ", "姐妹们 ", "宝子 ", "老师，", "", ""]


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def noisy(text: str, rng: random.Random, pool: Sequence[str]) -> str:
    """One seeded random variation of a labelled comment."""
    r = rng.random()
    if r < 0.15:
        return text
    if r < 0.35:
        return text + "".join(rng.choices(_EMOJI, k=rng.randint(1, 3)))
    if r < 0.45:
        return rng.choice(_PREFIX) + text
    if r < 0.55:
        return " ".join(text)
    if r < 0.65:
        return _fullwidth(text)
    if r < 0.75:
        return "".join(chr(_S2T.get(ord(c), ord(c))) for c in text)
    if r < 0.85:
        return text + text[-1] * rng.randint(1, 4)
    return text + rng.choice(["，", " ", "。"]) + rng.choice(pool)


class NaiveMatcher:
    """Same patterns and resolution as RuleMatcher, found by a per-keyword `in` scan."""

    def __init__(self, rules: Sequence[Rule], negations: Sequence[NegationCue]) -> None:
        self.rules = list(rules)
        self.negations = [(rule_text(normalize(n.pattern)), n.max_gap) for n in negations]
        keyword_patterns = {r.pattern for r in self.rules}
        self.negations = [(p, g) for p, g in self.negations if p not in keyword_patterns]

    def match(self, text: str) -> Rule | None:
        if not text:
            return None
        hits: list[Hit] = []
        for rule in self.rules:
            p = rule.pattern
            if p in text:
                start = text.find(p)
                while start >= 0:
                    hits.append(Hit(start, start + len(p), rule))
                    start = text.find(p, start + 1)
        if not hits:
            return None
        negs: list[tuple[int, int, int]] = []
        for p, gap in self.negations:
            start = text.find(p)
            while start >= 0:
                negs.append((start, start + len(p), gap))
                start = text.find(p, start + 1)
        return resolve(hits, negs)


def timed_interleaved(
    fns: Sequence[Callable[[list[str]], list[IntentResult]]], texts: list[str], batch: int
) -> list[tuple[float, list[IntentResult]]]:
    """Time each function on the same batches, taking turns batch by batch.

    The machine is shared: interleaving spreads any background load evenly over
    the contenders instead of penalising whichever happened to run during it.
    """
    totals = [0.0] * len(fns)
    outs: list[list[IntentResult]] = [[] for _ in fns]
    for i in range(0, len(texts), batch):
        chunk = texts[i : i + batch]
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            res = fn(chunk)
            totals[k] += time.perf_counter() - t0
            outs[k].extend(res)
    return list(zip(totals, outs, strict=True))


def print_report(rep: EvalReport) -> None:
    print(
        f"heldout[{rep.name}] n={rep.n_test} macro_f1={rep.macro_f1:.3f} accuracy={rep.accuracy:.3f}"
        + (
            f" rule_coverage={rep.rule_coverage:.2f} rule_accuracy={rep.rule_accuracy:.3f}"
            if rep.rule_coverage
            else ""
        )
    )
    for name, m in rep.per_intent.items():
        print(
            f"  {name:<9} precision={m.precision:.3f} recall={m.recall:.3f} f1={m.f1:.3f} support={m.support}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20,000 comments, well under 30 s")
    ap.add_argument("--n", type=int, default=None, help="number of comments to classify")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--batch", type=int, default=5000, help="comments per classify_many call")
    args = ap.parse_args()
    n = args.n if args.n is not None else (20_000 if args.quick else 200_000)
    if n <= 0 or args.batch <= 0:
        ap.error("--n and --batch must be positive")

    with threadpool_limits(limits=1):
        t0 = time.perf_counter()
        hybrid_rep, model_rep, _ = evaluate()
        print(f"heldout_fit_and_score_s={time.perf_counter() - t0:.2f}")
        print_report(hybrid_rep)
        print_report(model_rep)

        t0 = time.perf_counter()
        clf = get_classifier()
        print(
            f"fit_full_set_s={time.perf_counter() - t0:.2f} rules={len(clf.matcher.rules)} trusted_rules={len(clf.rule_confidence)}"
        )

        rng = random.Random(args.seed)
        pool = [e.text for e in load_examples()]
        texts = [noisy(rng.choice(pool), rng, pool) for _ in range(n)]
        print(
            f"comments={n} distinct={len(set(texts))} mean_chars={sum(map(len, texts)) / n:.1f} batch={args.batch}"
        )

        naive = IntentClassifier(
            NaiveMatcher(clf.matcher.rules, clf.matcher.negations),  # type: ignore[arg-type]
            clf.model,
            clf.rule_confidence,
            clf.overrides,
        )
        contenders = [clf.classify_many, naive.classify_many, clf.model_only]
        for fn in contenders:
            fn(texts[:2000])  # warm caches before timing
        (t_hybrid, res_hybrid), (t_naive, res_naive), (t_model, res_model) = timed_interleaved(
            contenders, texts, args.batch
        )
        if res_naive != res_hybrid:
            diff = sum(a != b for a, b in zip(res_naive, res_hybrid, strict=True))
            raise SystemExit(f"naive_in_scan disagrees with Aho-Corasick on {diff} comments")

    ruled = sum(r.matched_rule is not None for r in res_hybrid)
    agree = sum(a.intent == b.intent for a, b in zip(res_hybrid, res_model, strict=True))
    print(f"decided_by_rules={ruled / n:.3f} agreement_with_model_only={agree / n:.3f}")
    print(f"naive_in_scan: {t_naive:.2f}s comments_per_s={n / t_naive:.0f} (same answers)")
    print(
        f"model_only: {t_model:.2f}s comments_per_s={n / t_model:.0f} heldout_macro_f1={model_rep.macro_f1:.3f}"
    )
    print(
        f"rules+model: {t_hybrid:.2f}s comments_per_s={n / t_hybrid:.0f} heldout_macro_f1={hybrid_rep.macro_f1:.3f}"
    )
    print(f"ratio_vs_model_only={t_model / t_hybrid:.2f}")
    print(f"ratio_vs_naive_in_scan={t_naive / t_hybrid:.2f}")
    print(f"comments_per_s={n / t_hybrid:.0f}")


if __name__ == "__main__":
    main()
