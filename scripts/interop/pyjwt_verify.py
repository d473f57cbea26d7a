"""Verifies an access token the way an independent relying party would:
PyJWT fetching the issuer's JWKS. Exit 0 when valid, 1 with a reason when not.

usage: pyjwt_verify.py JWKS_URL ISSUER AUDIENCE TOKEN
"""
import sys

import jwt


def main() -> int:
    jwks_url, issuer, audience, token = sys.argv[1:5]
    header = jwt.get_unverified_header(token)
    if header.get("typ") != "at+jwt":
        print(f"wrong typ: {header.get('typ')!r}")
        return 1
    key = jwt.PyJWKClient(jwks_url).get_signing_key_from_jwt(token)
    try:
        claims = jwt.decode(
            token,
            key.key,
            algorithms=["ES256", "EdDSA", "RS256"],
            audience=audience,
            issuer=issuer,
            options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
        )
    except jwt.PyJWTError as e:
        print(f"rejected: {type(e).__name__}: {e}")
        return 1
    print(f"valid alg={header['alg']} sub={claims['sub']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
