#!/usr/bin/env python3
"""What a second factor adds to a sign-in, against a release issuer (OWASP
argon2id, SQLite) on loopback: password login alone; password login (the
mfa_required answer) plus /auth/mfa/verify with a TOTP code; and a
passwordless passkey sign-in (login/start + login/finish). Client-side
request times only: code computation and the software authenticator's
signing are outside the timed spans. Password logins are interleaved with
the TOTP sign-ins, so both see the same machine.

usage: mfa_latency.py ISSUER_BIN [--count N]   (prints one JSON line)
Needs pyotp and cryptography (the tools venv).
"""
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import pyotp

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
from soft_passkey import SoftPasskey  # noqa: E402

PASSWORD = "correct horse battery staple"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Client:
    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method, path, body=None, token=None):
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        started = time.perf_counter()
        self.conn.request(method, path, body=data, headers=headers)
        r = self.conn.getresponse()
        raw = r.read()
        elapsed_us = (time.perf_counter() - started) * 1e6
        return r.status, (json.loads(raw) if raw else None), elapsed_us


def summary(values):
    v = sorted(values)
    pick = lambda q: v[min(len(v) - 1, int(q * len(v)))]
    return {"count": len(v), "p50_us": pick(0.5), "p99_us": pick(0.99), "mean_us": sum(v) / len(v)}


def register(c, tag):
    email = f"{tag}-{os.urandom(6).hex()}@example.com"
    status, _, _ = c.call("POST", "/auth/register", {"email": email, "password": PASSWORD})
    assert status == 201, status
    return email


def login(c, email):
    return c.call("POST", "/auth/login", {"email": email, "password": PASSWORD})


def main():
    issuer_bin = sys.argv[1]
    count = int(sys.argv[sys.argv.index("--count") + 1]) if "--count" in sys.argv else 40
    work = tempfile.mkdtemp(prefix="mfa-bench-")
    port = free_port()
    origin = f"http://localhost:{port}"
    env = dict(os.environ, ISSUER_URL=origin)
    off = []
    for c in ("login", "register", "refresh", "password", "mfa", "other"):
        off += [f"--rate-limit-{c}", "off"]
    proc = subprocess.Popen(
        [issuer_bin, "serve", "--listen", f"127.0.0.1:{port}",
         "--database-url", f"sqlite://{work}/issuer.db", *off],
        env=env, stdout=open(f"{work}/issuer.log", "w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 30
        while True:
            try:
                if Client(port).call("GET", "/ready")[0] == 200:
                    break
            except OSError:
                pass
            assert time.time() < deadline, "issuer not ready"
            time.sleep(0.1)
        c = Client(port)

        # Password only, interleaved with the TOTP sign-ins below so both
        # see the same machine (the first runs would otherwise pay warm-up).
        pwd_email = register(c, "pwd")
        login(c, pwd_email)
        password = []

        # Password, then TOTP: a user per sign-in (each time step is accepted
        # once per user), enrolled with the previous step's code so the
        # current one is free.
        totp_login, totp_verify, totp_total = [], [], []
        for _ in range(count):
            email = register(c, "totp")
            _, tokens, _ = login(c, email)
            token = tokens["access_token"]
            _, enrol, _ = c.call("POST", "/auth/mfa/totp", {}, token)
            otp = pyotp.TOTP(enrol["secret"])
            for _ in range(2):
                status, _, _ = c.call("POST", "/auth/mfa/totp/confirm",
                                      {"code": otp.at(int(time.time()) - 30)}, token)
                if status == 200:
                    break
            assert status == 200, status
            status, _, us = login(c, pwd_email)
            assert status == 200, status
            password.append(us)
            status, challenge, us1 = login(c, email)
            assert status == 401 and challenge["error"] == "mfa_required", challenge
            code = otp.at(int(time.time()))
            status, _, us2 = c.call("POST", "/auth/mfa/verify",
                                    {"mfa_ticket": challenge["mfa_ticket"], "code": code})
            assert status == 200, status
            totp_login.append(us1)
            totp_verify.append(us2)
            totp_total.append(us1 + us2)

        # Passwordless passkey sign-in.
        auth = SoftPasskey(origin)
        email = register(c, "passkey")
        _, tokens, _ = login(c, email)
        token = tokens["access_token"]
        _, start, _ = c.call("POST", "/auth/passkeys/register/start", {}, token)
        cred = auth.create(start["options"])
        status, _, _ = c.call("POST", "/auth/passkeys/register/finish",
                              {"ceremony_id": start["ceremony_id"], "credential": cred}, token)
        assert status == 201, status
        passkey = []
        for _ in range(count):
            status, start, us1 = c.call("POST", "/auth/passkeys/login/start", {})
            assert status == 200, status
            assertion = auth.get(start["options"])
            status, _, us2 = c.call("POST", "/auth/passkeys/login/finish",
                                    {"ceremony_id": start["ceremony_id"], "credential": assertion})
            assert status == 200, status
            passkey.append(us1 + us2)

        p = summary(password)
        t = summary(totp_total)
        print(json.dumps({
            "bench": "mfa-login",
            "password_login": p,
            "totp_first_step": summary(totp_login),
            "totp_verify": summary(totp_verify),
            "password_plus_totp": t,
            "passkey_login": summary(passkey),
            "totp_added_p50_us": t["p50_us"] - p["p50_us"],
        }))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
