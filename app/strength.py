"""How hard a secret or a password is to guess, by zxcvbn's estimate.

Length and distinct characters say little: `abcdefghabcdefgh...` has both and is found
in a few hundred guesses. zxcvbn (the estimator Dropbox published, kept as the
`zxcvbn` package) scores repeats, sequences, keyboard walks, dates and dictionary
words, so the checks below refuse what a guesser tries first.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from zxcvbn import zxcvbn

# zxcvbn's matchers are quadratic; it refuses longer input. Checking the first 72
# characters only errs towards refusing (a patterned start stays patterned).
ZXCVBN_MAX_LENGTH = 72
# An HS256 key is attacked offline: ~100 bits of estimated guesses (10^30) at least.
# A 32-character random token scores about 10^32, a patterned one of any length < 10^8.
MIN_SECRET_GUESSES_LOG10 = 30.0
# zxcvbn's scale: 3 = "safely unguessable: moderate protection from offline attacks".
MIN_PASSWORD_SCORE = 3
# Words an attacker tries first for this application's accounts.
APP_WORDS = ("silhouette", "card", "maker", "scm", "admin", "administrator")


def _estimate(value: str, user_inputs: Iterable[str] = ()) -> Mapping[str, Any]:
    return zxcvbn(value[:ZXCVBN_MAX_LENGTH], user_inputs=list(user_inputs),
                  max_length=ZXCVBN_MAX_LENGTH)


def secret_guesses_log10(secret: str) -> float:
    return float(_estimate(secret)["guesses_log10"])


def secret_problem(secret: str) -> str | None:
    """Why `secret` is too weak to sign tokens, or None when it is strong enough."""
    guesses = secret_guesses_log10(secret)
    if guesses < MIN_SECRET_GUESSES_LOG10:
        return (f"guessable in about 10^{guesses:.0f} tries (repeats, sequences or words); "
                f"at least 10^{MIN_SECRET_GUESSES_LOG10:.0f} is required")
    return None


def password_problem(password: str, *related: str | None) -> str | None:
    """Why `password` is too weak for an account, or None; `related` are the user's name etc."""
    words = [word for word in (*related, *APP_WORDS) if word]
    result = _estimate(password, words)
    if result["score"] >= MIN_PASSWORD_SCORE:
        return None
    feedback = result.get("feedback") or {}
    hint = feedback.get("warning") or " ".join(feedback.get("suggestions") or [])
    return "too easy to guess" + (f" ({hint.rstrip('.')})" if hint else "")
