#!/usr/bin/env bash
# Regenerates the screenshot gallery in docs/screenshots/: every page state of the portal,
# in Japanese and English, at 1280 px (desktop) and 375 px (phone), as the accessibility
# walk of the browser test sees them (tests/browser/a11y.py, JavaScript on), plus the
# index docs/screenshots/README.md.
#
#   bash docs/screenshots.sh
#
# Needs what the browser test needs (chromium, chromium-driver, selenium, axe-core: bash
# .ci/run installs them) and pngquant (apt-get install pngquant) to keep the PNGs small.
# Takes about two minutes on a warm build. The gallery is committed: rerun this after a
# change to the pages or the stylesheet.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/nidan-target}"

command -v pngquant >/dev/null || { echo "pngquant is missing: apt-get install pngquant" >&2; exit 1; }
[ -f tests/browser/node_modules/axe-core/axe.min.js ] || npm ci --prefix tests/browser --no-audit --no-fund

out=docs/screenshots
raw=$(mktemp -d)
trap 'rm -rf "$raw"' EXIT
# The test fails on any accessibility finding: a gallery is made only of pages that pass.
NIDAN_GALLERY="$raw" cargo test --locked --test it -- --exact \
  browser::every_page_passes_axe_in_both_languages_with_and_without_javascript

mkdir -p "$out"
rm -f "$out"/*.png
for f in "$raw"/*.png; do
  # 256 colours at most; the pages are flat colours and text, so nothing visible is lost.
  pngquant --quality 65-90 --speed 1 --strip --output "$out/$(basename "$f")" -- "$f"
done

python3 - "$out" <<'EOF'
"""Writes the gallery's index from the PNG names (LANG-VIEW-STATE.png), in the walk's order."""
import os
import re
import sys

out = sys.argv[1]
# In the order of the walk (tests/browser/a11y.py).
TITLES = {
    "id": "Login, step 1: the ID",
    "password-code": "Step 2: password + security code (sent by SMS)",
    "password-code-email": "The security code by email instead",
    "resend-cooldown": "Sending the code again too soon: the cooldown",
    "wrong-code": "A wrong security code (the trust choice kept)",
    "trust-without-name": "Trusting this browser without a name: asked for one",
    "trust-device": "Trusting this browser, with a name",
    "landing": "The first page after the login (the demo's echo backend)",
    "signed-in": "Logged in: the portal's home",
    "devices": "Trusted devices",
    "confirm-remove-device": "Removing a trusted device: asked first",
    "sessions": "Where you are logged in",
    "settings": "2-step verification settings",
    "settings-saved": "Settings saved",
    "passkeys": "Passkeys",
    "tokens": "App passwords",
    "token-created": "A new app password, shown once",
    "logged-out": "Logged out",
    "password-only": "A trusted browser: the password alone",
    "not-found": "A page that does not exist (a way out)",
    "flow-expired": "A login that expired",
    "step-up-code": "A page that needs both steps: only the code is asked",
    "throttled": "Too many codes asked for: please wait",
    "password-code-phone-kept": "Phone contract kept (suspended): the code by email",
    "password-code-no-app": "App chosen but none enrolled yet: a code instead",
    "app": "The phone app page",
    "app-enrollment": "Setting up the app: QR code and security code",
    "app-enrolled": "The app is set up",
    "app-waiting": "Waiting for the approval in the app (the number to pick)",
    "password-code-instead-of-app": "A security code instead of the app",
    "app-wrong-number": "The wrong number was picked in the app",
    "app-approved": "Approved in the app: now the password",
    "password-code-app-limit": "Too many app prompts: a code instead",
}
shots = {}
for name in sorted(os.listdir(out)):
    m = re.fullmatch(r"(ja|en)-(desktop|phone)-([a-z0-9-]+)\.png", name)
    if m:
        lang, view, state = m.groups()
        if state not in TITLES:
            sys.exit(f"{name}: a page state without a title: add it to TITLES in docs/screenshots.sh")
        shots.setdefault(state, {})[(lang, view)] = name
lines = [
    "# The portal, page by page",
    "",
    "Every page state of nidan's login portal, in Japanese and English, on a desktop",
    "(1280 px) and a phone (375 px), as a person sees it with JavaScript on. Each one also",
    "passes axe-core (see docs/accessibility.md). Made by `bash docs/screenshots.sh`",
    "from the browser test's walk; do not edit by hand.",
    "",
    "| # | page | 日本語 desktop | 日本語 phone | English desktop | English phone |",
    "|---:|---|---|---|---|---|",
]
n = 0
for state, title in TITLES.items():
    files = shots.get(state)
    if not files:
        continue
    n += 1
    cells = []
    for key in [("ja", "desktop"), ("ja", "phone"), ("en", "desktop"), ("en", "phone")]:
        f = files.get(key)
        width = 240 if key[1] == "desktop" else 90
        cells.append(f'<a href="{f}"><img src="{f}" width="{width}" alt="{title} ({key[0]}, {key[1]})"></a>' if f else "")
    lines.append(f"| {n} | {title} (`{state}`) | " + " | ".join(cells) + " |")
with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
print(f"{sum(len(v) for v in shots.values())} screenshots of {len(shots)} page states in {out}/")
EOF
du -sh "$out"
