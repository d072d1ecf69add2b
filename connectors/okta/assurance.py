"""How many independent factors an Okta authentication-policy rule demands.

An app authentication (``ACCESS_POLICY``) rule says how a user is verified in its
``actions.appSignOn.verificationMethod``. Okta's management OpenAPI spec
(``components.schemas.VerificationMethod``, discriminator ``type``) documents three kinds:

* ``ASSURANCE`` — ``factorMode`` ``1FA``/``2FA`` and ``constraints``: alternatives (a
  list, though Okta also answers a single object), each with ``knowledge`` and/or
  ``possession`` constraints listing the permitted authenticator ``types`` /
  ``methods`` / ``authenticationMethods`` and ``userVerification``;
* ``AUTH_METHOD_CHAIN`` — ``chains``: alternatives, each a sequence of up to three steps
  (``authenticationMethods`` — any one of them — then ``next[0]``);
* ``ID_PROOFING`` — identity verification by an IDV vendor, not sign-in MFA.

A rule requires MFA when *every* way through it combines two factor classes of which
one is a second factor from the operator's list (:data:`SECOND_FACTOR_METHODS` by
default): knowledge (password, security question), possession (a counted method), and
user verification (PIN/biometric) on a possession authenticator that requires it.
Anything else — an unknown type, a missing ``factorMode``, an empty chain — is judged
weak and named, never passed by default. Pure functions: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from itertools import product
from typing import Any

from connectors.identityshared import dig

#: Authenticator method types (Okta ``AuthenticatorMethodType``) counted as a factor
#: beyond the password. Left out by default, as NIST SP 800-63B (§5.1.3.1, §5.1.1.1) and
#: Okta's own phishing guidance would have it: ``email`` (not an out-of-band device),
#: ``security_question`` and ``password`` (knowledge, the same class as the password),
#: ``tac`` (a temporary code handed out by the help desk) and ``idp`` (whatever a
#: federated IdP did is not visible here). The default of okta.policy.mfa_required's
#: second_factor_methods in policies.checks.toml, which must list the same
#: (tests/test_check_metadata.py holds them together).
SECOND_FACTOR_METHODS: tuple[str, ...] = (
    "push",
    "signed_nonce",
    "webauthn",
    "totp",
    "otp",
    "sms",
    "voice",
    "duo",
    "cert",
)
KNOWLEDGE_METHODS = frozenset({"password", "security_question"})

#: Constraint ``types`` (authenticator categories) → the method types they stand for.
_TYPE_METHODS: dict[str, tuple[str, ...]] = {
    "security_key": ("webauthn",),
    "phone": ("sms", "voice"),
    "email": ("email",),
    "password": ("password",),
    "security_question": ("security_question",),
    "app": ("push", "signed_nonce", "totp", "otp"),
    "federated": ("idp",),
}


def _as_list(value: Any) -> list[Any]:
    """Okta answers some documented arrays as a single object: accept both."""
    if isinstance(value, list):
        return value
    if isinstance(value, Mapping):
        return [value]
    return []


def _lower(value: Any) -> str:
    return str(value).strip().casefold()


# --------------------------------------------------------------------------- chains


def _step_classes(method: Mapping[str, Any], counted: frozenset[str]) -> frozenset[str]:
    """Factor classes one authentication method of a chain step proves."""
    name = _lower(method.get("method"))
    if name in KNOWLEDGE_METHODS:
        return frozenset({"knowledge"})
    if name not in counted:
        return frozenset()
    if _lower(method.get("userVerification")) == "required":
        return frozenset({"possession", "user_verification"})
    return frozenset({"possession"})


def _chain_steps(chain: Mapping[str, Any]) -> Iterator[list[Mapping[str, Any]]]:
    step: Any = chain
    depth = 0
    while isinstance(step, Mapping) and depth < 10:  # Okta allows 3; guard malformed loops
        yield [m for m in _as_list(step.get("authenticationMethods")) if isinstance(m, Mapping)]
        nxt = _as_list(step.get("next"))
        step = nxt[0] if nxt else None
        depth += 1


def _label(method: Mapping[str, Any]) -> str:
    return f"{method.get('key')}/{method.get('method')}"


def weak_chain_paths(chains: Any, counted: frozenset[str]) -> list[str]:
    """Every way through ``chains`` that does not combine two factor classes with a
    counted second factor, as ``"okta_password/password"`` or ``"a → b"`` strings."""
    weak: list[str] = []
    chain_list = _as_list(chains)
    if not chain_list:
        return ["no authentication method chain"]
    for chain in chain_list:
        steps = list(_chain_steps(chain)) if isinstance(chain, Mapping) else []
        if not steps or any(not s for s in steps):
            weak.append("a chain step without authentication methods")
            continue
        for path in product(*steps):
            classes = frozenset().union(*(_step_classes(m, counted) for m in path))
            if len(classes) < 2 or "possession" not in classes:
                weak.append(" → ".join(_label(m) for m in path))
    return weak


# --------------------------------------------------------------------------- assurance


def _allowed_methods(constraint: Mapping[str, Any]) -> set[str] | None:
    """Method types a knowledge/possession constraint permits; None = not restricted."""
    named: set[str] = set()
    restricted = False
    types = constraint.get("types")
    for t in types if isinstance(types, list) else []:
        restricted = True
        named.update(_TYPE_METHODS.get(_lower(t), (_lower(t),)))
    methods = constraint.get("methods")
    for m in methods if isinstance(methods, list) else []:
        restricted = True
        named.add(_lower(m))
    for obj in _as_list(constraint.get("authenticationMethods")):
        if isinstance(obj, Mapping) and obj.get("method"):
            restricted = True
            named.add(_lower(obj["method"]))
    return named if restricted else None


def weak_assurance(verification: Mapping[str, Any], counted: frozenset[str]) -> str | None:
    """Why an ``ASSURANCE`` verification method does not guarantee MFA, or None."""
    mode = verification.get("factorMode")
    constraints = [c for c in _as_list(verification.get("constraints")) if isinstance(c, Mapping)]
    if mode == "2FA":
        for c in constraints:
            possession = c.get("possession")
            if not isinstance(possession, Mapping):
                continue
            allowed = _allowed_methods(possession)
            if allowed is not None and not (allowed & counted):
                return (
                    "2FA whose possession factor may only be "
                    f"{', '.join(sorted(allowed)) or 'nothing'} (not counted as a second factor)"
                )
        return None
    if mode == "1FA":
        # One factor only — unless every alternative is a counted possession
        # authenticator that itself requires user verification (PIN or biometric).
        if constraints and all(
            isinstance(c.get("possession"), Mapping)
            and not isinstance(c.get("knowledge"), Mapping)
            and _lower(dig(c, "possession", "userVerification")) == "required"
            and ((allowed := _allowed_methods(c["possession"])) is None or bool(allowed & counted))
            for c in constraints
        ):
            return None
        return "1FA (a single factor)"
    return f"factorMode {mode!r} (only 2FA, or 1FA with user verification, is multi-factor)"


def verification_weakness(verification: Any, counted: Iterable[str]) -> str | None:
    """Why a rule's ``verificationMethod`` lets a user in without MFA, or None."""
    allowed = frozenset(_lower(m) for m in counted)
    if not isinstance(verification, Mapping):
        return "no verification method"
    kind = verification.get("type")
    if kind == "ASSURANCE" or (kind is None and "factorMode" in verification):
        return weak_assurance(verification, allowed)
    if kind == "AUTH_METHOD_CHAIN":
        weak = weak_chain_paths(verification.get("chains"), allowed)
        if weak:
            return "authentication chain(s) without two factor classes: " + "; ".join(weak)
        return None
    if kind == "ID_PROOFING":
        return "identity proofing (ID_PROOFING) verifies who the user is, not a second factor"
    return f"verification method type {kind!r} is not one Annexa can judge as MFA"
