"""An application behind Envoy's own OAuth2 filter (envoy.filters.http.oauth2,
a client we did not write) with the issuer as its authorization server, in
headless Chromium (Debian's) driven by Playwright. Run by the sidecar's e2e
test `oauth::envoys_oauth2_filter_signs_people_in`.

usage: oauth_app_test.py APP_BASE PAGES_BASE PASSWORD SHOTS_DIR EMAIL_A EMAIL_B

APP_BASE is the sample app's Envoy listener (http://127.0.0.1:PORT), PAGES_BASE
the issuer's pages through Envoy (http://localhost:PORT): two sites, as an
app and its identity provider are. Person A signs in with a password; person
B has an authenticator app (pyotp computes its codes) and must give a code.
Each consents, reaches the app's scoped route with the token Envoy obtained
(the sidecar judges it), is refused a route the app was not granted, and A
then disconnects the app on the account page and is refused at the edge.
Prints "all steps passed"; exits non-zero with the failing step.
"""
import json
import sys
import time
import urllib.error
import urllib.request

import pyotp
from playwright.sync_api import expect, sync_playwright

APP, PAGES, PASSWORD, SHOTS, EMAIL_A, EMAIL_B = sys.argv[1:7]
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
NOTES = APP + "/memory/notes/today"


def step(what):
    print(f"ok {what}", flush=True)


def api(method, path, body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(PAGES + path, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def register(email):
    status, _ = api("POST", "/auth/register", {"email": email, "password": PASSWORD})
    assert status == 201, f"register {email}: {status}"


def enrol_totp(email):
    """B turns on an authenticator app (through the JSON API); its secret."""
    status, body = api("POST", "/auth/login", {"email": email, "password": PASSWORD})
    assert status == 200, f"login {status}"
    token = body["access_token"]
    status, body = api("POST", "/auth/mfa/totp", {}, token)
    assert status == 200, f"enrol {status}"
    totp = pyotp.TOTP(body["secret"])
    # The previous step's code confirms, leaving the current one for the
    # sign-in (a step is accepted once); twice in case the step turns.
    for _ in range(2):
        status, _ = api("POST", "/auth/mfa/totp/confirm",
                        {"code": totp.at(time.time() - 30)}, token)
        if status == 200:
            return totp
    raise AssertionError(f"TOTP not confirmed ({status})")


def new_page(browser):
    return browser.new_context().new_page()


def notes_page(page):
    """The upstream's echo of what reached it, as JSON."""
    return json.loads(page.locator("body").inner_text())


def sign_in_through_the_app(page, email, totp, shot):
    page.goto(NOTES)
    # Envoy sent the browser to the issuer's authorization endpoint, which
    # asks it to sign in first.
    expect(page.get_by_label("Email")).to_be_visible()
    assert page.url.startswith(PAGES), page.url
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    if totp:
        expect(page.get_by_label("Code")).to_be_visible()
        page.get_by_label("Code").fill(totp.now())
        page.get_by_role("button", name="Verify").click()
    expect(page.get_by_text("Allow access?")).to_be_visible()
    page.screenshot(path=f"{SHOTS}/oauth-consent-{shot}.png", full_page=True)
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(NOTES)
    seen = notes_page(page)
    headers = seen["headers"]
    assert seen["upstream"] == "memory-service", seen
    assert headers.get("x-client-id") == ["sample-app"], headers
    assert headers.get("x-user-id"), headers
    return headers["x-user-id"][0]


def main():
    register(EMAIL_A)
    register(EMAIL_B)
    totp = enrol_totp(EMAIL_B)
    step("two people: A with a password, B with an authenticator app too")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        a = new_page(browser)
        user_a = sign_in_through_the_app(a, EMAIL_A, None, "a")
        step("A: Envoy's OAuth2 filter, the hosted sign-in, consent, the scoped route")
        r = a.goto(APP + "/memory/other")
        assert r.status == 403, f"an ungranted route: {r.status}"
        step("A: a route the app was not granted is refused (403)")
        b = new_page(browser)
        user_b = sign_in_through_the_app(b, EMAIL_B, totp, "b")
        assert user_b != user_a
        step("B: the same, with a TOTP code from pyotp")

        # A disconnects the app on the account page: the edge refuses the
        # token Envoy still holds in its cookie, within the feed's lag.
        a.goto(PAGES + "/auth/ui/account")
        a.get_by_role("button", name="Disconnect Sample app").click()
        started = time.monotonic()
        while True:
            r = a.goto(NOTES)
            if r.status in (401, 403) or time.monotonic() - started > 10:
                break
            time.sleep(0.05)
        assert r.status in (401, 403), f"after disconnecting: {r.status}"
        step(f"A: disconnected, refused at the edge ({r.status})")
        r = b.goto(NOTES)
        assert r.status == 200, f"B is unaffected: {r.status}"
        step("B: still in")
        browser.close()
    print("all steps passed")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the failing step, for the test's message
        print(f"FAIL {type(e).__name__}: {e}")
        sys.exit(1)
