#!/usr/bin/env python3
"""Verifies a nidan identity assertion the way a backend written in Python would: PyJWT
(with `cryptography` for EdDSA) fetches the JWKS from nidan and checks signature, issuer,
audience and expiry. Prints the claims as JSON; any failure exits non-zero.

usage: verify_assertion.py JWKS_URL TOKEN AUDIENCE ISSUER
"""
import json
import sys

import jwt


def main() -> int:
    jwks_url, token, audience, issuer = sys.argv[1:5]
    key = jwt.PyJWKClient(jwks_url).get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        key.key,
        algorithms=["EdDSA"],
        audience=audience,
        issuer=issuer,
        options={"require": ["exp", "iat", "sub", "aud", "iss", "jti"]},
    )
    print(json.dumps(claims))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except jwt.PyJWTError as e:
        print(f"rejected: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
