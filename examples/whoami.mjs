// Who is signed in? A backend's check of a browser's session with authd.
//
// Your backend receives the browser's `session_id` cookie (authd set it at
// login) and asks authd whose session it is, by forwarding the cookie to
// GET /profile: 200 and the email, or 403 for no valid session.
//
//     node examples/whoami.mjs http://127.0.0.1:5000 SESSION_TOKEN
//
// prints the email and exits 0, or prints "not signed in" and exits 1.
// Node 18 or later (its built-in fetch); no packages.

export async function whoIs(authdUrl, sessionToken, cookieName = "session_id") {
  // In the production profile the cookie is named `__Host-session_id`.
  const answer = await fetch(new URL("/profile", authdUrl), {
    headers: { Cookie: `${cookieName}=${sessionToken}` },
  });
  if (answer.status === 403) return null;
  if (!answer.ok) throw new Error(`authd answered ${answer.status}`);
  return (await answer.json()).email;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const email = await whoIs(process.argv[2], process.argv[3]);
  console.log(email ?? "not signed in");
  process.exit(email === null ? 1 : 0);
}
