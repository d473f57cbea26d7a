#!/usr/bin/env python3
"""A software passkey authenticator for tests: an ES256 key per credential,
"none" attestation, user presence and verification asserted, discoverable
(it keeps the user handle and answers without allowCredentials).

Speaks JSON lines on stdin/stdout, one request per line:
    {"op": "create", "options": <CreationChallengeResponse>}  -> RegisterPublicKeyCredential
    {"op": "get", "options": <RequestChallengeResponse>}      -> PublicKeyCredential
    {"op": "get", "options": ..., "tamper": true}             -> the same with a broken signature
Errors answer {"error": "..."}.

    soft_passkey.py ORIGIN [--synced]
"""
import base64, hashlib, json, os, struct
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives import hashes

def b64u(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
def unb64u(s): return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))

def _head(major, n):                      # minimal canonical CBOR
    if n < 24: return bytes([major << 5 | n])
    for ai, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
        if n < 1 << (8 * struct.calcsize(fmt)): return bytes([major << 5 | ai]) + struct.pack(fmt, n)
def cbor(v):
    if isinstance(v, bool): return b"\xf5" if v else b"\xf4"
    if isinstance(v, int):  return _head(0, v) if v >= 0 else _head(1, -1 - v)
    if isinstance(v, bytes): return _head(2, len(v)) + v
    if isinstance(v, str): b = v.encode(); return _head(3, len(b)) + b
    if isinstance(v, dict): return _head(5, len(v)) + b"".join(cbor(k) + cbor(x) for k, x in v.items())
    raise TypeError(v)

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40

class SoftPasskey:
    def __init__(self, origin, backup=False):
        self.origin, self.backup, self.creds = origin, backup, {}   # cred_id -> (key, rp_id, user_handle, counter)

    def _flags(self, extra=0):
        return UP | UV | extra | ((BE | BS) if self.backup else 0)

    def _cdj(self, typ, challenge_b64u):
        return json.dumps({"type": typ, "challenge": challenge_b64u, "origin": self.origin,
                           "crossOrigin": False}, separators=(",", ":")).encode()

    def create(self, ccr):                   # ccr = CreationChallengeResponse JSON (dict)
        pk = ccr["publicKey"]
        assert any(p["alg"] == -7 for p in pk["pubKeyCredParams"])
        rp_id, user_handle = pk["rp"]["id"], unb64u(pk["user"]["id"])
        key, cred_id = ec.generate_private_key(ec.SECP256R1()), os.urandom(32)
        nums = key.public_key().public_numbers()
        cose = cbor({1: 2, 3: -7, -1: 1, -2: nums.x.to_bytes(32, "big"), -3: nums.y.to_bytes(32, "big")})
        auth_data = (hashlib.sha256(rp_id.encode()).digest() + bytes([self._flags(AT)])
                     + struct.pack(">I", 0) + bytes(16) + struct.pack(">H", len(cred_id)) + cred_id + cose)
        att_obj = cbor({"fmt": "none", "attStmt": {}, "authData": auth_data})
        self.creds[cred_id] = [key, rp_id, user_handle, 0]
        return {"id": b64u(cred_id), "rawId": b64u(cred_id), "type": "public-key",
                "response": {"attestationObject": b64u(att_obj),
                             "clientDataJSON": b64u(self._cdj("webauthn.create", pk["challenge"]))},
                "extensions": {}}

    def get(self, rcr):                      # rcr = RequestChallengeResponse JSON (dict)
        pk = rcr["publicKey"]
        allowed = [unb64u(c["id"]) for c in pk.get("allowCredentials") or []]
        cands = [c for c in self.creds if self.creds[c][1] == pk["rpId"] and (not allowed or c in allowed)]
        cred_id = cands[0]
        entry = self.creds[cred_id]; entry[3] += 1
        key, rp_id, user_handle, counter = entry
        auth_data = hashlib.sha256(rp_id.encode()).digest() + bytes([self._flags()]) + struct.pack(">I", counter)
        cdj = self._cdj("webauthn.get", pk["challenge"])
        sig = key.sign(auth_data + hashlib.sha256(cdj).digest(), ec.ECDSA(hashes.SHA256()))  # DER
        return {"id": b64u(cred_id), "rawId": b64u(cred_id), "type": "public-key",
                "response": {"authenticatorData": b64u(auth_data), "clientDataJSON": b64u(cdj),
                             "signature": b64u(sig), "userHandle": b64u(user_handle)},
                "extensions": {}}

def main():
    import sys
    origin = sys.argv[1]
    auth = SoftPasskey(origin, backup="--synced" in sys.argv[2:])
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            if req["op"] == "create":
                out = auth.create(req["options"])
            elif req["op"] == "get":
                out = auth.get(req["options"])
                if req.get("tamper"):
                    sig = bytearray(unb64u(out["response"]["signature"]))
                    sig[-1] ^= 1
                    out["response"]["signature"] = b64u(bytes(sig))
            else:
                out = {"error": "unknown op"}
        except Exception as e:  # the test reads the reason
            out = {"error": repr(e)}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
