#!/usr/bin/env python3
"""Who is signed in? A backend's check of a browser's session with authd.

Your backend receives the browser's `session_id` cookie (authd set it at
login) and asks authd whose session it is, by forwarding the cookie to
GET /profile: 200 and the email, or 403 for no valid session.

    python3 examples/whoami.py http://127.0.0.1:5000 SESSION_TOKEN

prints the email and exits 0, or prints "not signed in" and exits 1.
Standard library only.
"""

import json
import sys
import urllib.error
import urllib.request


def who_is(authd_url, session_token, cookie_name="session_id"):
    """The email of the session's user, or None if the session is not valid.

    In the production profile the cookie is named `__Host-session_id`.
    """
    request = urllib.request.Request(
        authd_url.rstrip("/") + "/profile",
        headers={"Cookie": f"{cookie_name}={session_token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return json.load(answer)["email"]
    except urllib.error.HTTPError as error:
        if error.code == 403:
            return None
        raise


if __name__ == "__main__":
    email = who_is(sys.argv[1], sys.argv[2])
    print(email if email is not None else "not signed in")
    sys.exit(0 if email is not None else 1)
