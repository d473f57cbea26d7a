"""Turns a benchmark run's JSON lines into the markdown tables of the README.

usage: report.py RESULTS.jsonl > table.md
"""
import json
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
load = [r for r in rows if "label" in r]
cases = []
for r in load:
    if r["label"] not in cases:
        cases.append(r["label"])


def find(label, rate):
    """The run of `label` at `rate`; for the closed loop (rate None), the
    median of the interleaved rounds by throughput."""
    runs = [r for r in load if r["label"] == label and r.get("target_rps") == rate]
    if not runs:
        return None
    runs.sort(key=lambda r: r["achieved_rps"])
    return runs[len(runs) // 2]


def ms(us):
    return f"{us / 1000:.2f}"


floor = find(cases[0], None) if cases else None
hop = find(cases[1], None) if len(cases) > 1 else None

print("| case | max rps (median of rounds) | failed (closed loop) | × Envoy alone | × no-op ext_authz | p50 / p99 / p99.9 ms @1k | @2k | @5k | CPU µs/req Envoy, authz (closed loop) |")
print("| --- | ---: | ---: | ---: | ---: | --- | --- | --- | --- |")
for label in cases:
    closed = find(label, None)
    cells = [label]
    if closed:
        cells.append(f"{closed['achieved_rps']:.0f}")
        # Throughput means nothing without what failed along the way.
        cells.append(str(closed["errors"] + closed["non_2xx"]))
        cells.append(f"{closed['achieved_rps'] / floor['achieved_rps']:.2f}" if floor else "")
        cells.append(f"{closed['achieved_rps'] / hop['achieved_rps']:.2f}" if hop else "")
    else:
        cells += ["", "", "", ""]
    for rate in (1000, 2000, 5000):
        r = find(label, rate)
        if r is None:
            cells.append("")
            continue
        bad = r["errors"] + r["non_2xx"]
        note = f" ({bad} failed)" if bad else ""
        cells.append(f"{ms(r['p50_us'])} / {ms(r['p99_us'])} / {ms(r['p999_us'])}{note}")
    cpu = closed.get("cpu_us_per_request", []) if closed else []
    cells.append(", ".join(f"{c:.1f}" for c in cpu))
    print("| " + " | ".join(cells) + " |")

other = [r for r in rows if "bench" in r]
if other:
    print()
    print("| issuer benchmark | result |")
    print("| --- | --- |")
    for r in other:
        b = r["bench"]
        if b == "login-storm":
            how = f"{r['target_rate']}/s offered" if r.get("target_rate") else f"{r['concurrency']} back-to-back"
            print(
                f"| login storm ({how}, OWASP argon2id) | "
                f"{r['logins_per_second']:.1f} logins/s, p50 {ms(r['login']['p50_us'])} ms, p99 {ms(r['login']['p99_us'])} ms; "
                f"beside it at {r['side_rate']}/s: refresh p99 {ms(r['refresh_during_storm']['p99_us'])} ms, "
                f"JWKS p99 {ms(r['jwks_during_storm']['p99_us'])} ms |"
            )
        elif b == "rate-limit-cost":
            m = r["memory"]["latency"]
            red = (r.get("redis") or {}).get("latency")
            via = f"; through Redis p50 {red['p50_ns'] / 1000:.1f} µs, p99 {red['p99_ns'] / 1000:.1f} µs" if red else ""
            print(f"| rate-limit decision ({m['count']}) | from memory p50 {m['p50_ns'] / 1000:.2f} µs, p99 {m['p99_ns'] / 1000:.2f} µs{via} |")
        elif b == "mfa-login":
            p, t, v, k = r["password_login"], r["password_plus_totp"], r["totp_verify"], r["passkey_login"]
            print(
                f"| sign-in with a second factor ({p['count']} each, OWASP argon2id, SQLite, loopback) | "
                f"password alone p50 {ms(p['p50_us'])} ms, p99 {ms(p['p99_us'])} ms; "
                f"password + TOTP p50 {ms(t['p50_us'])} ms, p99 {ms(t['p99_us'])} ms (verify step p50 {ms(v['p50_us'])} ms); "
                f"passwordless passkey p50 {ms(k['p50_us'])} ms, p99 {ms(k['p99_us'])} ms |"
            )
        elif b == "admin-change-lag":
            m, g = r["membership_change"], r["role_grant_change"]
            print(
                f"| admin change → sidecar decision (issuer + sidecar in one process, SQLite) | "
                f"membership change ({m['count']}): p50 {ms(m['p50_us'])} ms, p99 {ms(m['p99_us'])} ms; "
                f"role grant added/withdrawn ({g['count']}, same token): p50 {ms(g['p50_us'])} ms, p99 {ms(g['p99_us'])} ms |"
            )
        elif b == "user-search":
            ix, sc = r["indexed"], r["scan"]
            print(
                f"| user search, {r['users']:,} users, PostgreSQL ({ix['count']} substring queries, ~{r['mean_hits']:.1f} hits) | "
                f"trigram index p50 {ms(ix['p50_us'])} ms, p99 {ms(ix['p99_us'])} ms; "
                f"without it (scan) p50 {ms(sc['p50_us'])} ms, p99 {ms(sc['p99_us'])} ms "
                f"({r['scan_to_indexed_p50']:.0f}× at p50) |"
            )
        elif b == "github-sign-in":
            cb, pw = r["github_callback"], r["password_login"]
            print(
                f"| GitHub sign-in against the fake ({cb['count']}, alternating with password logins) | "
                f"callback p50 {ms(cb['p50_us'])} ms, p99 {ms(cb['p99_us'])} ms; whole dance p50 {ms(r['github_whole_dance']['p50_us'])} ms; "
                f"password login p50 {ms(pw['p50_us'])} ms, p99 {ms(pw['p99_us'])} ms "
                f"(callback/password p50 {r['callback_to_password_p50']:.2f}×) |"
            )
        elif b == "oauth-token-endpoint":
            print(
                f"| {r['operation']} ({r['concurrency']} back-to-back, {r.get('database', 'SQLite')}) | "
                f"{r['per_second']:.0f}/s, p50 {ms(r['p50_us'])} ms, p99 {ms(r['p99_us'])} ms |"
            )
        elif "refreshes_per_second" in r:
            print(f"| {b} ({r['concurrency']} sessions) | {r['refreshes_per_second']:.0f} refreshes/s, p50 {ms(r['latency']['p50_us'])} ms, p99 {ms(r['latency']['p99_us'])} ms |")
        elif "revocations" in r:
            side = r.get("sidecar_lag") or {}
            at_sidecar = (
                f"; the sidecar's own histogram ({side['count']} applied): p50 ≤ {side['p50_le_ms']} ms, p99 ≤ {side['p99_le_ms']} ms"
                if side else ""
            )
            print(f"| {b} | {r['revocations']} revocations, logout answered → denied: median {ms(r['lag']['p50_us'])} ms, p99 {ms(r['lag']['p99_us'])} ms, max {ms(r['lag']['max_us'])} ms{at_sidecar} |")
