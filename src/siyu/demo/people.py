"""Vectorised people attributes for the sandbox: names, mobiles, regions, platform identifiers, remarks.

Faker (zh_CN, seeded) is asked once for pools of surnames and given names; customers then get
index draws into those pools, so a million names cost a few array operations instead of a
million Faker calls.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from faker import Faker
from numpy.typing import NDArray

from siyu.demo.vocab import MOBILE_PREFIXES, REGIONS

_ALNUM = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
_WECOM_ALPHABET = np.frombuffer(
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-", dtype=np.uint8
)

# WeCom accepts remarks of at most 20 characters; the mobile stays whole (siyu.customers.remarks).
REMARK_LIMIT = 20


class NamePools:
    """Surname and given-name pools drawn once from a seeded zh_CN Faker."""

    def __init__(self, seed: int, size: int = 3000) -> None:
        fake = Faker("zh_CN")
        fake.seed_instance(seed)
        # Faker weights surnames by frequency (王 7%, 李 7%, ...), so a drawn pool keeps that shape.
        self.surnames = [fake.last_name() for _ in range(size)]
        singles_m = [fake.first_name_male() for _ in range(size)]
        singles_f = [fake.first_name_female() for _ in range(size)]
        # Faker's given-name lists are short (about 60 per gender); pairing two of them gives the
        # two-character given names most people born after 1980 have.
        self.male = singles_m[: size // 2] + [
            a[0] + b[-1] for a, b in zip(singles_m[size // 2 :], singles_m[::-1], strict=False)
        ]
        self.female = singles_f[: size // 2] + [
            a[0] + b[-1] for a, b in zip(singles_f[size // 2 :], singles_f[::-1], strict=False)
        ]

    def names(self, gender: NDArray[np.int8], rng: np.random.Generator) -> list[str]:
        """One full name per customer; gender 1 male, 2 female, 0 either; ~12% WeChat-style nicknames."""
        n = int(gender.shape[0])
        size = len(self.surnames)
        surname = rng.integers(0, size, n)
        given = rng.integers(0, len(self.male), n)
        female = (gender == 2) | ((gender == 0) & (rng.random(n) < 0.5))
        style = rng.random(n)
        out: list[str] = []
        sur, males, females = self.surnames, self.male, self.female
        for s, g, f, st in zip(
            surname.tolist(), given.tolist(), female.tolist(), style.tolist(), strict=False
        ):
            first = females[g] if f else males[g]
            if st < 0.06 and f:
                out.append(first[-1] * 2 + "妈妈")  # "朵朵妈妈": mothers often go by their child's pet name
            elif st < 0.1:
                out.append("A" + sur[s] + first)  # sellers prefix "A" to sort first in contact lists
            elif st < 0.12:
                out.append(first[-1] * 2)
            else:
                out.append(sur[s] + first)
        return out


def unique_mobiles(n: int, rng: np.random.Generator) -> NDArray[np.int64]:
    """n distinct valid mainland mobile numbers (as int64 1XXXXXXXXXX), drawn from real segments."""
    prefixes = np.asarray(MOBILE_PREFIXES, dtype=np.int64)
    out = prefixes[rng.integers(0, len(prefixes), n)] * 100_000_000 + rng.integers(0, 100_000_000, n)
    while True:
        _, first = np.unique(out, return_index=True)
        dup = np.ones(n, dtype=bool)
        dup[first] = False
        k = int(dup.sum())
        if k == 0:
            return out
        # Redraw only the later duplicates, so earlier numbers (and determinism) stay put.
        out[dup] = prefixes[rng.integers(0, len(prefixes), k)] * 100_000_000 + rng.integers(0, 100_000_000, k)


def regions(
    n: int, rng: np.random.Generator, unknown_share: float = 0.15
) -> tuple[list[str], NDArray[np.int16]]:
    """The region vocabulary ("广东省深圳市") and one index per customer (-1 unknown)."""
    names: list[str] = []
    weights: list[float] = []
    for province, weight, cities in REGIONS:
        for city in cities:
            names.append(province + city)
            weights.append(weight / len(cities))
    p = np.asarray(weights) / sum(weights)
    idx = rng.choice(len(names), size=n, p=p).astype(np.int16)
    idx[rng.random(n) < unknown_share] = -1
    return names, idx


def random_tokens(
    n: int, length: int, rng: np.random.Generator, prefix: bytes = b"", alphabet: NDArray[np.uint8] = _ALNUM
) -> list[str]:
    """n random tokens of `length` characters after `prefix`, unique (a redraw fixes rare collisions)."""
    body = alphabet[rng.integers(0, len(alphabet), (n, length))]
    if prefix:
        head = np.broadcast_to(np.frombuffer(prefix, dtype=np.uint8), (n, len(prefix)))
        body = np.concatenate([head, body], axis=1)
    raw = np.ascontiguousarray(body).view(f"S{body.shape[1]}").ravel()
    _, first = np.unique(raw, return_index=True)
    if first.shape[0] != n:  # a collision among 62**length values; astronomically rare but cheap to fix
        dup = np.ones(n, dtype=bool)
        dup[first] = False
        fix = random_tokens(int(dup.sum()), length + 4, rng, prefix, alphabet)
        out = raw.astype(object)
        out[dup] = [t.encode() for t in fix]
        raw = out
    return [bytes(t).decode() for t in raw.tolist()]


def wecom_external_userids(n: int, rng: np.random.Generator) -> list[str]:
    """WeCom external userids look like wmXXXX (32 characters, starting "wm" for WeChat users)."""
    return random_tokens(n, 30, rng, b"wm", _WECOM_ALPHABET)


def douyin_open_ids(n: int, rng: np.random.Generator) -> list[str]:
    """Douyin open_ids look like _000XXXX (36 characters)."""
    return random_tokens(n, 32, rng, b"_000")


def taobao_nicks(n: int, rng: np.random.Generator) -> list[str]:
    """Default Taobao buyer nicks ("tb" + digits), unique."""
    numbers = rng.choice(9 * 10**10, size=n, replace=False) + 10**10
    return ["tb" + str(v) for v in numbers.tolist()]


@lru_cache(maxsize=4096)
def _kept_lengths(lengths: tuple[int, ...], budget: int) -> tuple[int, ...]:
    """How many characters of each word survive: cut the longest (first on ties) until all fits."""
    kept = list(lengths)

    def total() -> int:
        live = [k for k in kept if k]
        return sum(live) + max(len(live) - 1, 0)

    while total() > budget:
        longest = max(range(len(kept)), key=lambda i: (kept[i], -i))
        if not kept[longest]:
            break
        kept[longest] -= 1
    return tuple(kept)


def _remark_words(words: tuple[str, ...], budget: int) -> str:
    # The cut depends only on the words' lengths, so a million remarks share a few hundred computations.
    kept = _kept_lengths(tuple(len(w) for w in words), budget)
    return "+".join(w[:k] for w, k in zip(words, kept, strict=False) if k)


def remark(name: str, label: str, intent: str, mobile: str | None) -> str:
    """The "Name+Source+Intent+Mobile" remark, shortened like siyu.customers.remarks."""
    words = (name, label, intent)
    if not mobile:
        return _remark_words(words, REMARK_LIMIT)
    head = _remark_words(words, REMARK_LIMIT - len(mobile) - 1)
    return head + "+" + mobile if head else mobile
