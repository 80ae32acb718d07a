"""The console's Settings in a real browser against a real server (SQLite): profile fields,
roles, the password policy, API keys and SCIM tokens shown once and revoked for real, webhook
subscribers, the audit trail's filters; account administrators only."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import expect

from learndir.core import account_admin
from learndir.core.auth import load_actor
from tests.console.support import ConsolePage, squash
from tests.support import World


def test_a_department_administrator_gets_no_settings(
    console: ConsolePage, demo_world: World
) -> None:
    console.sign_in(demo_world, "sales.admin")
    nav = console.page.get_by_role("navigation", name="Console sections")
    expect(nav.get_by_role("link", name="Settings")).to_have_count(0)
    with console.client() as client:
        for path in ("/console/settings", "/console/settings/keys", "/console/settings/audit"):
            assert client.get(path).status_code == 403, path
        refused = client.post(
            "/console/settings/keys", data={"csrf": console.csrf()}, follow_redirects=False
        )
        assert refused.status_code == 403


def test_fields_roles_and_policy(console: ConsolePage, demo_world: World) -> None:
    page = console.sign_in(demo_world, "owner")
    page.get_by_role("navigation", name="Console sections").get_by_role(
        "link", name="Settings"
    ).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Profile fields")
    expect(page.get_by_role("link", name="Profile fields")).to_have_attribute(
        "aria-current", "page"
    )
    expect(page.get_by_role("row", name=re.compile("Employee"))).to_be_visible()

    # A bad name: the core's words next to the field, what was typed kept, status 422.
    page.get_by_label("Name", exact=True).fill("9 lives")
    page.get_by_label("Label").fill("Badge number")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Add field").click()
    assert answer.value.status == 422
    name = page.get_by_label("Name", exact=True)
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#field-name-error")).to_contain_text("a field name is a letter")
    expect(page.get_by_label("Label")).to_have_value("Badge number")
    # A type the core does not know (sent by hand: the select offers only known ones).
    with console.client() as client:
        bad = client.post(
            "/console/settings/fields",
            data={"csrf": console.csrf(), "name": "badge", "type": "colour"},
        )
    assert bad.status_code == 422 and "unknown type" in bad.text
    name.fill("badge")
    page.get_by_label("Type").select_option("string")
    page.get_by_label(re.compile("^Unique")).check()
    page.get_by_role("button", name="Add field").click()
    expect(page.locator(".notice")).to_contain_text("badge")
    row = page.get_by_role("row", name=re.compile("Badge number"))
    expect(row).to_contain_text("USER_DEFINED_FIELD")
    console.check("settings-fields")

    # The settings' own navigation works from the keyboard.
    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Roles").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Roles")
    expect(page.get_by_role("row", name=re.compile("HR Partner"))).to_be_visible()
    page.get_by_label("Name", exact=True).fill("Report Reader")
    page.get_by_label("View users").check()
    page.get_by_label("View reports").check()
    page.get_by_role("button", name="Create role").click()
    expect(page.locator(".notice")).to_contain_text("Report Reader")
    expect(page.get_by_role("row", name=re.compile("Report Reader"))).to_contain_text(
        "view users, view reports"
    )
    console.check("settings-roles")

    page.get_by_role("navigation", name="Settings").get_by_role(
        "link", name="Password and invitation"
    ).click()
    minimum = page.get_by_label("Minimum password length")
    minimum.fill("10")
    page.get_by_role("button", name="Save password policy").click()
    expect(page.locator(".notice")).to_contain_text("at least 10 characters")
    expect(minimum).to_have_value("10")
    minimum.fill("0")
    page.get_by_role("button", name="Save password policy").click()
    expect(minimum).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#min-length-error")).to_contain_text("between 1 and 256")
    expect(minimum).to_have_value("0")
    # The new minimum applies at once: a 9-character password is refused.
    with console.client() as client:
        short = client.post(
            "/console/me/password",
            data={
                "csrf": console.csrf(),
                "current": demo_world.passwords["owner"],
                "password": "Short-123",
                "repeat": "Short-123",
            },
        )
    assert short.status_code == 422 and "at least 10 characters" in short.text
    page.get_by_label("Invitation message").fill("Welcome to the demo academy.")
    page.get_by_role("button", name="Save invitation text").click()
    expect(page.locator(".notice")).to_contain_text("invitation text was saved")
    expect(page.get_by_label("Minimum password length")).to_have_value("10")
    expect(page.get_by_label("Invitation message")).to_have_value("Welcome to the demo academy.")
    console.check("settings-policy")


def test_keys_tokens_webhooks_and_the_audit_trail(console: ConsolePage, demo_world: World) -> None:
    page = console.sign_in(demo_world, "owner")
    base = console.site.base_url
    console.goto("/settings/keys")
    page.get_by_label("For the user (login or id)").fill("nobody.here")
    page.get_by_role("button", name="Create an API key").click()
    expect(page.locator("#key-user-error")).to_contain_text("no user with the login")
    expect(page.get_by_label("For the user (login or id)")).to_have_value("nobody.here")
    page.get_by_label("For the user (login or id)").fill("")
    page.get_by_role("button", name="Create an API key").click()
    client_id = page.locator("#new-client-id").inner_text()
    secret = page.locator("#new-client-secret").inner_text()
    assert client_id and len(secret) > 20
    expect(page.get_by_text("shown this once").first).to_be_visible()
    assert secret not in page.url
    assert all(secret not in c["value"] for c in page.context.cookies())
    console.check("settings-keys-created")
    token_form = {
        "client_id": client_id,
        "client_secret": secret,
        "grant_type": "client_credentials",
    }
    assert httpx.post(f"{base}/api/v3/token", data=token_form).status_code == 200
    # Opened again, the page lists the key but never its secret.
    console.goto("/settings/keys")
    assert secret not in page.content()
    row = page.get_by_role("row", name=re.compile(client_id))
    expect(row).to_contain_text("active")
    # No dialog to answer: the button says what it does, and the key is revoked at once.
    row.get_by_role("button", name="Revoke").click()
    expect(page.locator(".notice")).to_contain_text(f"{client_id} was revoked")
    expect(page.get_by_role("row", name=re.compile(client_id))).to_contain_text("revoked")
    assert httpx.post(f"{base}/api/v3/token", data=token_form).status_code == 401

    page.get_by_label(re.compile("^Invite new users")).check()
    page.get_by_role("button", name="Create a SCIM token").click()
    token = page.locator("#new-scim-token").inner_text()
    token_id = page.locator("#new-token-id").inner_text()
    assert token.startswith("scim_")
    expect(page.locator(".secret-box").last).to_contain_text("/scim/v2")
    bearer = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{base}/scim/v2/Users?count=1", headers=bearer).status_code == 200
    console.goto("/settings/keys")
    assert token not in page.content()
    token_row = page.get_by_role("row", name=re.compile(token_id))
    expect(token_row).to_contain_text("yes")
    token_row.get_by_role("button", name="Revoke").click()
    expect(page.locator(".notice")).to_contain_text(f"{token_id} was revoked")
    assert httpx.get(f"{base}/scim/v2/Users?count=1", headers=bearer).status_code == 401
    console.check("settings-keys")

    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Webhooks").click()
    page.get_by_label("Name", exact=True).fill("lms")
    page.get_by_label("Callback URL").fill("ftp://lms.example.com/hook")
    page.get_by_label("USER_REGISTERED").check()
    page.get_by_role("button", name="Register subscriber").click()
    expect(page.locator("#hook-url-error")).to_contain_text("http:// or https://")
    expect(page.get_by_label("Name", exact=True)).to_have_value("lms")
    expect(page.get_by_label("USER_REGISTERED")).to_be_checked()
    page.get_by_label("Callback URL").fill("https://lms.example.com/hook")
    page.get_by_label("Secret (optional)").fill("hook-secret-1")
    page.get_by_role("button", name="Register subscriber").click()
    expect(page.locator(".notice")).to_contain_text("lms was registered")
    hook = page.get_by_role("row", name=re.compile("lms"))
    expect(hook).to_contain_text("not confirmed")
    expect(hook).to_contain_text("USER_REGISTERED")
    expect(hook).to_contain_text("0 pending")
    hook.get_by_role("button", name="Disable: lms").click()
    expect(page.get_by_role("row", name=re.compile("lms"))).to_contain_text("disabled")
    assert "hook-secret-1" not in page.content()
    console.check("settings-webhooks")
    page.get_by_role("button", name="Remove: lms").click()
    expect(page.locator(".notice")).to_contain_text("lms was removed")
    expect(page.get_by_text("No subscribers yet.")).to_be_visible()

    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Audit trail").click()
    page.get_by_label("Operation").select_option("API_KEY_REVOKED")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"operation=API_KEY_REVOKED"))
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(client_id)
    expect(rows.first).to_contain_text("owner")
    expect(rows.first).to_contain_text("console")
    page.get_by_label("Operation").select_option("")
    page.get_by_label("Target id").fill(client_id)
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(2)
    assert squash(rows.nth(1).inner_text()).count("API_KEY_CREATED") == 1
    expect(rows.first).to_contain_text("revokedAt")
    console.check("settings-audit")
    # Bad input: the core's words next to the field, 422.
    with console.client() as client:
        answer = client.get("/console/settings/audit", params={"user": "nobody.here"})
        assert answer.status_code == 422 and "no user with the login" in answer.text
        answer = client.get("/console/settings/audit", params={"since": "yesterday"})
        assert answer.status_code == 422
        answer = client.get("/console/settings/audit", params={"page": "!!"})
        assert answer.status_code == 422
        by_login = client.get(
            "/console/settings/audit", params={"user": "owner", "operation": "ROLE_CREATED"}
        )
        assert by_login.status_code == 200


def test_audit_pages_with_the_core_token(console: ConsolePage, demo_world: World) -> None:
    # Enough records for two pages: 50 changes of the policy, made through the core.
    with demo_world.db.read() as conn:
        owner = load_actor(conn, demo_world.users["owner"])
    assert owner is not None
    for minimum in range(11, 61):
        account_admin.set_password_policy(demo_world.db, owner, minimum)
    page = console.sign_in(demo_world, "owner")
    console.goto("/settings/audit")
    first = page.locator("tbody tr")
    expect(first).to_have_count(50)
    newest = first.first.inner_text()
    page.get_by_role("link", name="Older").click()
    expect(page).to_have_url(re.compile(r"page="))
    assert page.locator("tbody tr").first.inner_text() != newest
    expect(page.get_by_role("link", name="Newest")).to_be_visible()
    console.check()


def test_what_a_user_can_send_is_never_a_server_error(
    console: ConsolePage, demo_world: World
) -> None:
    console.sign_in(demo_world, "owner")
    csrf = console.csrf()
    with console.client() as client:
        for path, data in (
            ("/console/settings/fields", {"name": "a\x00b", "label": "x\x00", "type": "string"}),
            ("/console/settings/roles", {"name": "R\x00", "permissions": ["fly"]}),
            ("/console/settings/policy/password", {"min_length": "99999999999"}),
            ("/console/settings/policy/invitation", {"invitation_message": "a\x00"}),
            ("/console/settings/webhooks", {"name": "n\x00", "callback_url": "https://x.test"}),
            ("/console/settings/webhooks", {"name": "n", "callback_url": "https://x.test/\x00"}),
            ("/console/settings/webhooks/remove", {"name": "nobody"}),
            ("/console/settings/webhooks/enable", {"name": "n\x00"}),
            ("/console/settings/webhooks/fly", {"name": "n"}),
            ("/console/settings/keys/revoke", {"client_id": "\x00"}),
            ("/console/settings/scim-tokens/revoke", {"token_id": "not-a-token"}),
            ("/console/settings/keys", {"user": "u\x00"}),
        ):
            answer = client.post(path, data={"csrf": csrf, **data})
            assert 400 <= answer.status_code < 500, (path, data, answer.status_code)
        # A key for another user of the account: listed under that user.
        made = client.post("/console/settings/keys", data={"csrf": csrf, "user": "sales.admin"})
        assert made.status_code == 201 and "shown this once" in made.text
        assert ">sales.admin</a>" in client.get("/console/settings/keys").text
        for params in (
            {"target": "t\x00"},
            {"user": "u\x00"},
            {"until": "9999-12-31"},
            {"operation": "FLY"},
        ):
            answer = client.get("/console/settings/audit", params=params)
            assert answer.status_code == 422, params
