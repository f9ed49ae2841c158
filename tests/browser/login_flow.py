"""Drives a real headless Chromium through nidan's login pages, as a person would.

Usage: login_flow.py BASE_URL OUTBOX_FILE SCREENSHOT_DIR
Prints one JSON line with what it saw; exits non-zero on any failure.
"""
import json
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

base, outbox, shots = sys.argv[1], sys.argv[2], sys.argv[3]


def last_code(user, after=0):
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            with open(outbox, encoding="utf-8") as f:
                lines = [json.loads(l) for l in f if l.strip()]
        except FileNotFoundError:
            lines = []
        codes = [m["code"] for m in lines if m.get("user") == user and m.get("code")]
        if len(codes) > after:
            return codes[-1], len(codes)
        time.sleep(0.1)
    raise SystemExit(f"no code for {user}")


def submit(drv, form_css="form"):
    drv.find_element(By.CSS_SELECTOR, form_css + " button.primary").click()


def wait_until(drv, what, cond):
    # A click only starts a navigation: wait for the page it leads to.
    try:
        WebDriverWait(drv, 15).until(lambda d: cond(d))
    except Exception:
        raise SystemExit(f"timed out waiting for {what} at {drv.current_url}")


def on_password_page(d):
    return "/_nidan/login/" in d.current_url and d.find_elements(By.ID, "password")


opts = webdriver.ChromeOptions()
for a in [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]:
    opts.add_argument(a)
opts.add_experimental_option("prefs", {"intl.accept_languages": "ja,en"})
opts.binary_location = "/usr/bin/chromium"
drv = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
seen = {}
try:
    # A feature-phone-sized screen first.
    drv.set_window_size(360, 740)
    drv.get(base + "/app/page?x=1")
    wait_until(drv, "the login page", lambda d: "/_nidan/login?rd=" in d.current_url)
    seen["lang"] = drv.find_element(By.TAG_NAME, "html").get_attribute("lang")
    seen["label_for_id"] = drv.find_element(By.CSS_SELECTOR, "label[for=id]").text
    drv.save_screenshot(f"{shots}/1-id-phone.png")
    # No horizontal scrolling on a small screen.
    seen["scroll_width"] = drv.execute_script("return document.documentElement.scrollWidth")
    drv.find_element(By.ID, "id").send_keys("hanako")
    submit(drv)
    wait_until(drv, "the password page", on_password_page)
    code, n = last_code("hanako")
    assert drv.find_elements(By.ID, "code"), "the code field sits beside the password"
    seen["destination"] = drv.find_element(By.CSS_SELECTOR, ".dest").text
    drv.find_element(By.ID, "password").send_keys("test-password-1")
    drv.find_element(By.ID, "code").send_keys(code)
    # Ticked by default (the seed), with the browser's description as a name to change.
    seen["trust_ticked"] = drv.find_element(By.ID, "trust_device").is_selected()
    name = drv.find_element(By.ID, "device_name")
    seen["name_suggested"] = name.get_attribute("value")
    name.clear()
    name.send_keys("Chromium のテスト")
    drv.save_screenshot(f"{shots}/2-password-code-phone.png")
    submit(drv)
    wait_until(drv, "the return address", lambda d: d.current_url.endswith("/app/page?x=1"))
    body = drv.find_element(By.TAG_NAME, "body").text
    seen["backend_sees_user"] = "hanako" in body
    drv.save_screenshot(f"{shots}/3-backend.png")

    # Desktop size: the devices page lists this browser by name.
    drv.set_window_size(1280, 900)
    drv.get(base + "/_nidan/devices")
    seen["devices_page"] = drv.find_element(By.CSS_SELECTOR, ".device-name").text
    drv.save_screenshot(f"{shots}/4-devices-desktop.png")

    # Log out, log in again: the trusted browser is asked for the password only.
    drv.get(base + "/_nidan/")
    drv.find_element(By.CSS_SELECTOR, "form[action$='/logout'] button").click()
    wait_until(drv, "the logged-out page", lambda d: d.current_url.endswith("/_nidan/logout"))
    drv.get(base + "/app/page")
    wait_until(drv, "the ID page", lambda d: d.find_elements(By.ID, "id"))
    drv.find_element(By.ID, "id").send_keys("hanako")
    submit(drv)
    wait_until(drv, "the password page", on_password_page)
    seen["second_login_has_code_field"] = bool(drv.find_elements(By.ID, "code"))
    drv.find_element(By.ID, "password").send_keys("test-password-1")
    submit(drv)
    wait_until(drv, "the return address", lambda d: d.current_url.endswith("/app/page"))
    seen["second_login_url"] = drv.current_url
    _, n2 = last_code("hanako")
    seen["codes_sent"] = n2
except BaseException:
    print("at", drv.current_url, file=sys.stderr)
    print(drv.page_source[:3000], file=sys.stderr)
    drv.save_screenshot(f"{shots}/failure.png")
    raise
finally:
    drv.quit()
print(json.dumps(seen, ensure_ascii=False))
