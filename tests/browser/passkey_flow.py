"""Drives a real headless Chromium through nidan's passkey login, with Chromium's virtual
authenticator (CTAP2, internal transport, resident keys, user verification) standing in
for a fingerprint reader.

Usage: passkey_flow.py BASE_URL OUTBOX_FILE SCREENSHOT_DIR
BASE_URL must be http://localhost:PORT: WebAuthn needs a secure context and a domain as
the relying party ID (an IP address is not one).
Prints one JSON line with what it saw; exits non-zero on any failure.
"""
import json
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

base, outbox, shots = sys.argv[1], sys.argv[2], sys.argv[3]


def codes(user):
    try:
        with open(outbox, encoding="utf-8") as f:
            lines = [json.loads(l) for l in f if l.strip()]
    except FileNotFoundError:
        lines = []
    return [m["code"] for m in lines if m.get("user") == user and m.get("code")]


def last_code(user):
    deadline = time.time() + 10
    while time.time() < deadline:
        c = codes(user)
        if c:
            return c[-1]
        time.sleep(0.1)
    raise SystemExit(f"no code for {user}")


opts = webdriver.ChromeOptions()
for a in [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]:
    opts.add_argument(a)
opts.add_experimental_option("prefs", {"intl.accept_languages": "en"})
opts.binary_location = "/usr/bin/chromium"
drv = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
wait = WebDriverWait(drv, 20)
seen = {}
try:
    drv.set_window_size(1280, 900)
    # The fingerprint reader: a platform authenticator that verifies the user.
    drv.execute_cdp_cmd("WebAuthn.enable", {})
    auth = drv.execute_cdp_cmd("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
        "hasUserVerification": True, "isUserVerified": True,
        "automaticPresenceSimulation": True,
    }})["authenticatorId"]

    # 1. The usual login: ID, then password + security code.
    drv.get(base + "/app/page")
    assert "/_nidan/login?rd=" in drv.current_url, drv.current_url
    # nidan.js shows the passkey button where WebAuthn works.
    wait.until(EC.visibility_of_element_located((By.ID, "nidan-passkey-login")))
    drv.find_element(By.ID, "id").send_keys("hanako")
    drv.find_element(By.CSS_SELECTOR, "form button.primary").click()
    wait.until(EC.presence_of_element_located((By.ID, "code")))
    drv.find_element(By.ID, "password").send_keys("test-password-1")
    drv.find_element(By.ID, "code").send_keys(last_code("hanako"))
    drv.find_element(By.CSS_SELECTOR, "form button.primary").click()
    wait.until(lambda d: d.current_url.endswith("/app/page"))

    # 2. Register a passkey on the passkeys page (linked from the signed-in page).
    drv.get(base + "/_nidan/")
    drv.find_element(By.CSS_SELECTOR, "a[href$='/_nidan/passkeys']").click()
    form = wait.until(EC.visibility_of_element_located((By.ID, "nidan-passkey-register")))
    form.find_element(By.ID, "passkey-name").send_keys("Chromium fingerprint")
    drv.save_screenshot(f"{shots}/passkey-1-register.png")
    form.find_element(By.CSS_SELECTOR, "button.primary").click()
    wait.until(lambda d: "m=registered" in d.current_url)
    seen["passkeys_page"] = drv.find_element(By.CSS_SELECTOR, ".passkey .device-name").text
    seen["credentials_in_authenticator"] = len(
        drv.execute_cdp_cmd("WebAuthn.getCredentials", {"authenticatorId": auth})["credentials"])
    drv.save_screenshot(f"{shots}/passkey-2-registered.png")

    # 3. Log out.
    drv.get(base + "/_nidan/")
    drv.find_element(By.CSS_SELECTOR, "form[action$='/logout'] button").click()
    wait.until(lambda d: d.current_url.endswith("/_nidan/logout"))
    drv.get(base + "/_nidan/")
    seen["logged_out"] = "/_nidan/login" in drv.current_url

    # 4. Log in with the passkey alone: no ID, no password, no code.
    codes_before = len(codes("hanako"))
    drv.get(base + "/app/after?z=1")
    # The ID field offers the passkey by autofill (conditional mediation); the virtual
    # authenticator, which answers by itself, may take that offer before the button is
    # pressed. Either way the passkey alone logs in.
    def login_page_or_back(d):
        if d.current_url.endswith("/app/after?z=1"):
            return "autofill"
        try:
            b = d.find_elements(By.CSS_SELECTOR, "#nidan-passkey-login button")
            return "button" if b and b[0].is_displayed() else False
        except Exception:
            return False  # the page moved on while it was looked at
    how = wait.until(login_page_or_back)
    if how == "button":
        drv.save_screenshot(f"{shots}/passkey-3-login.png")
        try:
            drv.find_element(By.CSS_SELECTOR, "#nidan-passkey-login button").click()
        except Exception:
            how = "autofill"  # the autofill got there first and the page moved on
    seen["passkey_login_by"] = how
    wait.until(lambda d: d.current_url.endswith("/app/after?z=1"))
    seen["login_url"] = drv.current_url
    body = drv.find_element(By.TAG_NAME, "body").text
    seen["backend_sees_user"] = "hanako" in body
    seen["codes_sent_by_passkey_login"] = len(codes("hanako")) - codes_before
    drv.get(base + "/_nidan/")
    seen["signed_in_page"] = drv.find_element(By.TAG_NAME, "main").text
    drv.save_screenshot(f"{shots}/passkey-4-signed-in.png")
except BaseException:
    print("at", drv.current_url, file=sys.stderr)
    print(drv.page_source[:3000], file=sys.stderr)
    try:
        print(drv.get_log("browser"), file=sys.stderr)
    except Exception:
        pass
    drv.save_screenshot(f"{shots}/passkey-failure.png")
    raise
finally:
    drv.quit()
print(json.dumps(seen, ensure_ascii=False))
