"""The hosted pages in a real browser: headless Chromium (Debian's) driven by
Playwright, through real Envoy. Run by the sidecar's e2e test `pages`.

usage: pages_test.py BASE_URL ADMIN_EMAIL PASSWORD SHOTS_DIR PUBLIC_URL GITHUB_EMAIL
BASE_URL is Envoy's (http://localhost:PORT). PUBLIC_URL is the issuer's
configured URL, where GitHub sends the browser back: the browser is told
that it is served by BASE_URL (what DNS does in a deployment). The fake
GitHub has users octo-link and octo-new (GITHUB_EMAIL, no account yet). Prints one JSON line of
measurements (page weight, first contentful paint) at the end; exits
non-zero with the failing step on any failure.
"""
import base64
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pyotp
from playwright.sync_api import expect, sync_playwright

BASE, ADMIN_EMAIL, PASSWORD, SHOTS, PUBLIC, GITHUB_EMAIL = sys.argv[1:7]
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


OPEN_PAGES = []
# An application's page on the public origin, as a sign-in's return_to.
APP_RETURN = urllib.parse.quote(PUBLIC + "/ai/welcome", safe="")


def token_endpoint(client_id, secret):
    """A made-up code at the token endpoint with the client's secret: what
    the issuer answers tells whether the secret authenticated."""
    data = urllib.parse.urlencode({
        "grant_type": "authorization_code", "code": "made-up",
        "redirect_uri": "http://127.0.0.1/cb", "code_verifier": "v" * 43,
    }).encode()
    req = urllib.request.Request(BASE + "/auth/oauth2/token", data=data, method="POST")
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    req.add_header("authorization", f"Basic {basic}")
    req.add_header("content-type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read()).get("error")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()).get("error")


def api(method, path, body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(BASE + path, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def edge_status(token):
    """What Envoy (through the sidecar) answers a protected route."""
    return api("GET", "/ai/models/", token=token)[0]


def await_status(token, want, limit=10.0):
    """The edge learns of revocations through the feed: wait for it."""
    deadline = time.monotonic() + limit
    while True:
        got = edge_status(token)
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def page_token(context):
    return next(c["value"] for c in context.cookies() if c["name"] == "__Secure-page_token")


def sign_in(page, email, password):
    page.goto(BASE + "/auth/ui/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()


def public_url_is_envoy(context):
    """GitHub redirects to the issuer's public URL: send it to Envoy."""
    def to_envoy(route):
        u = urllib.parse.urlsplit(route.request.url)
        route.fulfill(status=302, headers={
            "location": BASE + u.path + ("?" + u.query if u.query else "")})
    context.route(PUBLIC + "/**", to_envoy)


def measure(page, path):
    """Bytes over the wire for the document and its stylesheet, and the
    first contentful paint, for a fresh load."""
    page.goto(BASE + path)
    page.wait_for_load_state("load")
    try:
        page.wait_for_function(
            "performance.getEntriesByName('first-contentful-paint').length > 0", timeout=3000)
    except Exception:  # a headless run may skip the paint entry
        pass
    return page.evaluate("""() => {
        const nav = performance.getEntriesByType('navigation')[0];
        const res = performance.getEntriesByType('resource');
        const fcp = performance.getEntriesByName('first-contentful-paint')[0];
        return {
            document_bytes: nav.transferSize,
            total_bytes: nav.transferSize + res.reduce((a, r) => a + r.transferSize, 0),
            requests: 1 + res.length,
            first_contentful_paint_ms: fcp ? fcp.startTime : null,
            dom_content_loaded_ms: nav.domContentLoadedEventEnd,
        };
    }""")


def main():
    email = f"pages-{uuid.uuid4().hex[:12]}@example.com"
    results = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            a = browser.new_context(viewport={"width": 390, "height": 844})  # a phone
            page = a.new_page()
            OPEN_PAGES.append(page)
            console_errors = []
            # CSP violations (the pages load nothing they do not declare). Error
            # statuses of the pages themselves (a wrong password is a 401 page)
            # are logged as failed loads too: those are expected.
            page.on("console", lambda m: console_errors.append(m.text)
                    if m.type == "error" and "Content Security Policy" in m.text else None)

            # Sign-in page: keyboard-reachable, labelled fields.
            page.goto(BASE + "/auth/ui/login")
            page.screenshot(path=f"{SHOTS}/sign-in.png", full_page=True)
            page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.id") == "email", "Tab reaches the email field"
            # A return_to elsewhere than the allowed origins is refused at once.
            bad = urllib.parse.quote("https://evil.example/", safe="")
            page.goto(f"{BASE}/auth/ui/login?return_to={bad}")
            expect(page.get_by_role("alert")).to_contain_text("allowed origin")
            assert page.locator("input[name=return_to]").count() == 0
            # A wrong password: the page says so and keeps the address.
            page.get_by_label("Email").fill(email)
            page.get_by_label("Password").fill("not the password")
            page.get_by_role("button", name="Sign in", exact=True).click()
            expect(page.get_by_role("alert")).to_contain_text("incorrect")
            expect(page.get_by_label("Email")).to_have_value(email)

            # Registration from the page signs the new account in; then out.
            page.get_by_role("link", name="Create an account").click()
            page.get_by_label("Email").fill(email)
            page.get_by_label("Password (at least 8 characters)").fill("short")
            page.get_by_role("button", name="Create account").click()
            # The browser's own check (minlength) keeps the form from leaving.
            expect(page).to_have_url(BASE + "/auth/ui/register")
            page.get_by_label("Password (at least 8 characters)").fill(PASSWORD)
            page.get_by_role("button", name="Create account").click()
            expect(page).to_have_url(BASE + "/auth/ui/account")
            page.get_by_role("button", name="Sign out").click()
            expect(page).to_have_url(BASE + "/auth/ui/login")

            # Password sign-in.
            sign_in(page, email, PASSWORD)
            expect(page).to_have_url(BASE + "/auth/ui/account")
            expect(page.get_by_text("Signed in as")).to_contain_text(email)
            token_a = page_token(a)
            assert edge_status(token_a) == 200, "the page session's token opens the edge"

            # TOTP enrolment: the secret read off the page, codes computed by pyotp.
            page.get_by_role("button", name="Set up an authenticator app").click()
            expect(page.locator(".qr svg")).to_be_visible()
            page.screenshot(path=f"{SHOTS}/totp-enrolment.png", full_page=True)
            secret = page.locator("#secret").inner_text().strip()
            page.get_by_label("Code from the app").fill(pyotp.TOTP(secret).now())
            page.get_by_role("button", name="Turn on").click()
            codes = page.locator("#recovery-codes li").all_inner_texts()
            assert len(codes) == 10, f"{len(codes)} recovery codes"
            page.goto(BASE + "/auth/ui/account")
            expect(page.locator("#totp-status")).to_contain_text("is set up")
            page.screenshot(path=f"{SHOTS}/account.png", full_page=True)

            # Sign out, then in again: password, then the second factor (a
            # recovery code: this step's TOTP code was spent on the enrolment).
            page.get_by_role("button", name="Sign out").click()
            expect(page).to_have_url(BASE + "/auth/ui/login")
            assert await_status(token_a, 401) == 401, "the signed-out session is refused at the edge"
            sign_in(page, email, PASSWORD)
            expect(page.get_by_label("Code")).to_be_visible()
            page.screenshot(path=f"{SHOTS}/second-factor.png", full_page=True)
            page.get_by_label("Code").fill("000000")
            page.get_by_role("button", name="Verify").click()
            expect(page.get_by_role("alert")).to_be_visible()
            page.get_by_label("Code").fill(codes[0])
            page.get_by_role("button", name="Verify").click()
            expect(page).to_have_url(BASE + "/auth/ui/account")
            token_a = page_token(a)

            # A passkey, added with Chromium's virtual authenticator (DevTools
            # WebAuthn domain), then used to sign in without a password.
            cdp = a.new_cdp_session(page)
            cdp.send("WebAuthn.enable")
            cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
                "protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
                "hasUserVerification": True, "isUserVerified": True,
                "automaticPresenceSimulation": True}})
            page.get_by_role("button", name="Add a passkey").click()
            expect(page.locator("#passkeys li")).to_have_count(1)
            page.get_by_role("button", name="Sign out").click()
            expect(page).to_have_url(BASE + "/auth/ui/login")
            page.get_by_role("button", name="Sign in with a passkey").click()
            expect(page).to_have_url(BASE + "/auth/ui/account")
            expect(page.get_by_text("Signed in as")).to_contain_text(email)
            token_a = page_token(a)
            assert edge_status(token_a) == 200, "a passkey session opens the edge"
            # The passkey as the second factor after the password.
            page.get_by_role("button", name="Sign out").click()
            sign_in(page, email, PASSWORD)
            page.get_by_role("button", name="Use a passkey instead").click()
            expect(page).to_have_url(BASE + "/auth/ui/account")
            token_a = page_token(a)
            assert edge_status(token_a) == 200, "password + passkey opens the edge"

            # Profile name and passkey name.
            page.get_by_label("Name", exact=True).fill("Ada Pages")
            page.get_by_role("button", name="Save").click()
            expect(page.get_by_label("Name", exact=True)).to_have_value("Ada Pages")
            key = page.locator("#passkeys li input")
            key.fill("Laptop key")
            page.get_by_role("button", name="Rename passkey").click()
            expect(page.locator("#passkeys li input")).to_have_value("Laptop key")

            # A personal access token from the form (the browser's own
            # navigation gets the secret), shown once; then revoked.
            page.get_by_label("Token name").fill("ci deploy")
            page.get_by_label("Scopes (separated by spaces)").fill("notes:read")
            page.get_by_role("button", name="Create token").click()
            shown = page.locator("#new-token").inner_text()
            assert shown.startswith("dmp_") and len(shown) == 40, shown
            page.get_by_role("link", name="Back to your account").click()
            expect(page.locator("#tokens li")).to_have_count(1)
            assert shown not in page.content(), "the token is shown only once"
            page.get_by_role("button", name="Revoke token ci deploy").click()
            expect(page.locator("#tokens li")).to_have_count(0)

            # Link GitHub (the password first), through the fake GitHub's
            # account picker and back; then unlink it.
            public_url_is_envoy(a)
            page.get_by_label("Your password, to link GitHub").fill(PASSWORD)
            page.get_by_role("button", name="Link GitHub").click()
            page.get_by_role("link", name="Sign in as octo-link").click()
            expect(page).to_have_url(BASE + "/auth/ui/account")
            expect(page.locator("#identities")).to_contain_text("octo-link")
            page.screenshot(path=f"{SHOTS}/account-linked.png", full_page=True)
            page.get_by_role("button", name="Unlink github").click()
            expect(page.locator("#identities li")).to_have_count(0)
            expect(page.get_by_role("button", name="Link GitHub")).to_be_visible()
            assert edge_status(page_token(a)) == 200, "a passkey session outlives the unlink"

            # Sign in with GitHub: a GitHub account with no account here gets
            # one, signed in; its only way in cannot be unlinked.
            d = browser.new_context()
            public_url_is_envoy(d)
            page_d = d.new_page()
            OPEN_PAGES.append(page_d)
            # From an application's sign-in link: back there once signed in.
            page_d.goto(f"{BASE}/auth/ui/login?return_to={APP_RETURN}")
            page_d.get_by_role("button", name="Sign in with GitHub").click()
            # The landing page moves on by itself: screenshot where it lands.
            expect(page_d.get_by_role("link", name="Sign in as octo-new")).to_be_visible()
            page_d.screenshot(path=f"{SHOTS}/github-picker.png")
            page_d.get_by_role("link", name="Sign in as octo-new").click()
            expect(page_d).to_have_url(BASE + "/ai/welcome")
            page_d.goto(BASE + "/auth/ui/account")
            expect(page_d.get_by_text("Signed in as")).to_contain_text(GITHUB_EMAIL)
            expect(page_d.locator("#identities")).to_contain_text("octo-new")
            assert edge_status(page_token(d)) == 200, "a GitHub session opens the edge"
            page_d.get_by_role("button", name="Unlink github").click()
            expect(page_d.get_by_role("alert")).to_contain_text("only way to sign in")
            token_d = page_token(d)
            d.close()

            # Cookie tossing: a sibling subdomain can plant a __Secure-
            # page cookie (here: the GitHub user's, on a longer path) beside
            # the user's own cookies; the pages must not act on it.
            e = browser.new_context()
            e.add_cookies([c for c in a.cookies() if c["name"] == "__Host-refresh_token"] + [{
                "name": "__Secure-page_token", "value": token_d, "domain": "localhost",
                "path": "/auth/ui/account", "secure": True, "httpOnly": True}])
            page_e = e.new_page()
            page_e.goto(BASE + "/auth/ui/account")
            expect(page_e).to_have_url(BASE + "/auth/ui/login")
            e.close()

            # A second browser signs in; the first ends that session from its
            # account page, and the second's token is refused at the edge.
            b = browser.new_context()
            public_url_is_envoy(b)
            page_b = b.new_page()
            OPEN_PAGES.append(page_b)
            # With a return_to: through the second factor, and back there.
            page_b.goto(f"{BASE}/auth/ui/login?return_to={APP_RETURN}")
            page_b.get_by_label("Email").fill(email)
            page_b.get_by_label("Password").fill(PASSWORD)
            page_b.get_by_role("button", name="Sign in", exact=True).click()
            page_b.get_by_label("Code").fill(codes[1])
            page_b.get_by_role("button", name="Verify").click()
            expect(page_b).to_have_url(BASE + "/ai/welcome")
            token_b = page_token(b)
            assert edge_status(token_b) == 200
            page.reload()
            end_buttons = page.get_by_role("button", name="End")
            expect(end_buttons).to_have_count(1)
            end_buttons.click()
            expect(page.get_by_role("button", name="End")).to_have_count(0)
            assert await_status(token_b, 401) == 401, "the ended session is refused at the edge"
            assert edge_status(token_a) == 200, "the other session lives on"

            # An admin disables the user; the user's token dies at the edge and
            # the account page sends them to sign in.
            # The admin role requires a second factor (--mfa-required-roles):
            # the admin's first sign-in enrols one, then completes.
            c = browser.new_context()
            page_c = c.new_page()
            OPEN_PAGES.append(page_c)
            sign_in(page_c, ADMIN_EMAIL, PASSWORD)
            expect(page_c.get_by_role("heading")).to_have_text("Set up an authenticator app")
            admin_secret = page_c.locator("#secret").inner_text().strip()
            page_c.get_by_label("Code from the app").fill(pyotp.TOTP(admin_secret).now())
            page_c.get_by_role("button", name="Turn on").click()
            expect(page_c.locator("#recovery-codes li")).to_have_count(10)
            page_c.get_by_role("link", name="Continue to your account").click()
            expect(page_c).to_have_url(BASE + "/auth/ui/account")
            page_c.get_by_role("link", name="Administration").click()
            # The daily summary as a chart (and a table), and the recent events.
            expect(page_c.locator("#daily-chart rect")).to_have_count(28)
            assert int(page_c.locator("#daily-chart + table tbody tr").first.locator("td").nth(1)
                       .inner_text()) >= 3, "today's sign-ins are counted"
            expect(page_c.locator("#events")).to_contain_text("login_success")
            page_c.get_by_label("Find users").fill(email)
            page_c.get_by_role("button", name="Search").click()
            row = page_c.locator(f'tr[data-user="{email}"]')
            expect(row).to_contain_text("active")
            page_c.screenshot(path=f"{SHOTS}/admin-users.png", full_page=True)
            row.get_by_role("button", name=f"Disable {email}").click()
            expect(page_c.locator(f'tr[data-user="{email}"]')).to_contain_text("disabled")
            assert await_status(token_a, 401) == 401, "the disabled user's token is refused at the edge"
            page.goto(BASE + "/auth/ui/account")
            expect(page).to_have_url(BASE + "/auth/ui/login")

            # The user's page: enable again, reset the second factors (the
            # user then signs in with the password alone), end their sessions.
            page_c.get_by_role("link", name=email).click()
            expect(page_c.locator("#user-state")).to_have_text("disabled")
            expect(page_c.locator("#user-mfa")).to_contain_text("authenticator app")
            page_c.get_by_role("button", name="Enable").click()
            expect(page_c.locator("#user-state")).to_have_text("active")
            page_c.get_by_role("button", name="Reset second factors").click()
            expect(page_c.locator("#user-mfa")).to_have_text("none")
            sign_in(page, email, PASSWORD)
            expect(page).to_have_url(BASE + "/auth/ui/account")
            token_a = page_token(a)
            assert edge_status(token_a) == 200, "enabled again, without a second factor"
            page_c.reload()
            expect(page_c.locator("#user-sessions")).not_to_have_text("0")
            page_c.get_by_role("button", name="End all sessions").click()
            expect(page_c.locator("#user-sessions")).to_have_text("0")
            assert await_status(token_a, 401) == 401, "the ended sessions are refused at the edge"

            # Teams: create one, add the user from their page, remove them,
            # delete the team.
            team = f"pages-{uuid.uuid4().hex[:8]}"
            page_c.get_by_role("link", name="Teams").click()
            page_c.get_by_label("Short name (a-z, 0-9, -)").fill(team)
            page_c.get_by_label("Name", exact=True).fill("Pages team")
            page_c.get_by_role("button", name="Create team").click()
            expect(page_c).to_have_url(f"{BASE}/auth/ui/admin/teams/{team}")
            page_c.get_by_role("link", name="Users").click()
            page_c.get_by_label("Find users").fill(email)
            page_c.get_by_role("button", name="Search").click()
            page_c.get_by_role("link", name=email).click()
            page_c.get_by_label("Team", exact=True).select_option(team)
            page_c.get_by_label("Role in the team").select_option("maintainer")
            page_c.get_by_role("button", name="Add to team").click()
            expect(page_c.locator("#user-teams")).to_contain_text(f"{team} (maintainer)")
            page_c.screenshot(path=f"{SHOTS}/admin-user.png", full_page=True)
            page_c.get_by_role("link", name=team).click()
            expect(page_c.locator(f'tr[data-member="{email}"]')).to_contain_text("maintainer")
            page_c.get_by_role("button", name=f"Remove {email}").click()
            expect(page_c.locator("#members tbody tr")).to_have_count(0)
            page_c.get_by_role("button", name="Delete this team").click()
            expect(page_c).to_have_url(BASE + "/auth/ui/admin/teams")
            expect(page_c.locator("#teams")).not_to_contain_text(team)

            # Applications: register a confidential client, its secret shown
            # once works at the token endpoint; a new secret that stops the old
            # one at once; delete it.
            app_id = f"app-{uuid.uuid4().hex[:8]}"
            page_c.get_by_role("link", name="Users").click()
            page_c.get_by_role("link", name="Applications").click()
            expect(page_c).to_have_url(BASE + "/auth/ui/admin/clients")
            page_c.get_by_label("Client id (a-z, 0-9, -; 3 to 64)").fill(app_id)
            page_c.get_by_label("Name users see").fill("Pages app")
            page_c.get_by_label("Redirect URIs, one per line (exact; http only on loopback)").fill(
                "http://127.0.0.1/cb\nhttps://app.example/cb")
            page_c.locator("summary").click()
            page_c.get_by_label("Access-token lifetime in seconds (empty: the issuer's)").fill("300")
            page_c.get_by_role("button", name="Register").click()
            expect(page_c.get_by_role("heading", name="Application registered")).to_be_visible()
            first_secret = page_c.locator("#client-secret").inner_text().strip()
            assert token_endpoint(app_id, first_secret) == (400, "invalid_grant"), \
                "the shown secret authenticates (the made-up code is what is refused)"
            page_c.get_by_role("link", name="Back to the applications").click()
            row = page_c.locator(f'tr[data-client="{app_id}"]')
            expect(row).to_contain_text("access 300 s")
            expect(row).to_contain_text("authorization_code, refresh_token")
            page_c.screenshot(path=f"{SHOTS}/admin-clients.png", full_page=True)
            # Changed in place: the form comes filled in; its secret stays.
            row.get_by_role("link", name="Pages app").click()
            expect(page_c.get_by_label("Name users see")).to_have_value("Pages app")
            page_c.get_by_label("Name users see").fill("Pages app, renamed")
            page_c.get_by_label("Access-token lifetime in seconds (empty: the issuer's)").fill("600")
            page_c.get_by_role("button", name="Save").click()
            expect(page_c.locator("#sessions-ended")).to_contain_text("0 session(s)")
            page_c.get_by_role("link", name="Back to the applications").click()
            row = page_c.locator(f'tr[data-client="{app_id}"]')
            expect(row).to_contain_text("Pages app, renamed")
            expect(row).to_contain_text("access 600 s")
            assert token_endpoint(app_id, first_secret) == (400, "invalid_grant"), "the secret stays"
            row.get_by_role("button", name=f"New secret for {app_id}, the old one stops now").click()
            second_secret = page_c.locator("#client-secret").inner_text().strip()
            assert second_secret != first_secret
            assert token_endpoint(app_id, first_secret) == (401, "invalid_client")
            assert token_endpoint(app_id, second_secret) == (400, "invalid_grant")
            page_c.get_by_role("link", name="Back to the applications").click()
            page_c.get_by_role("button", name=f"Delete {app_id}").click()
            expect(page_c).to_have_url(BASE + "/auth/ui/admin/clients")
            expect(page_c.locator("#clients")).not_to_contain_text(app_id)
            assert token_endpoint(app_id, second_secret) == (401, "invalid_client")

            # A form posted from another site is refused (login CSRF): from a
            # blank page, and from a real other origin (127.0.0.1 is another
            # site than localhost).
            foreign = BASE.replace("localhost", "127.0.0.1")
            for origin in (None, foreign + "/.well-known/jwks.json"):
                evil = browser.new_context().new_page()
                if origin:
                    evil.goto(origin)
                evil.evaluate("""([action, email, password]) => {
                    document.body.innerHTML = '<form method="post"><input name="email">'
                        + '<input name="password"></form>';
                    const f = document.forms[0];
                    f.action = action; f.email.value = email; f.password.value = password;
                }""", [BASE + "/auth/ui/login", ADMIN_EMAIL, PASSWORD])
                with evil.expect_navigation():
                    evil.evaluate("document.forms[0].submit()")
                assert "cross_site_request" in evil.content(), f"a cross-site sign-in from {origin} is refused"
                assert not any(c["name"] == "__Secure-page_token" for c in evil.context.cookies())

            results["sign_in"] = measure(browser.new_context().new_page(), "/auth/ui/login")
            results["account"] = measure(page_c, "/auth/ui/account")
            assert not console_errors, f"CSP violations: {console_errors}"
        except Exception:
            # Where each open page was, to tell a wrong turn from a slow one.
            for open_page in OPEN_PAGES:
                try:
                    text = open_page.inner_text("body")[:2000]
                    print(f"--- {open_page.url}\n{text}", file=sys.stderr)
                except Exception as e:  # a closed page
                    print(f"--- (page gone: {e})", file=sys.stderr)
            raise
        browser.close()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
