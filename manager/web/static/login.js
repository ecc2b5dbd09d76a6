// Redeems the one-time token carried in the URL fragment (never sent to the server in a request
// line), then forgets it: the fragment is removed from the address bar and history first.
const status = document.getElementById("login-status");
const match = /^#t=([A-Za-z0-9_-]{1,128})$/.exec(window.location.hash);
if (match) {
  const token = match[1];
  window.history.replaceState(null, "", "/login");
  status.textContent = "Logging in…";
  fetch("/login", {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-Bench-Web": "1" },
    body: JSON.stringify({ token }),
  }).then(async (response) => {
    const body = await response.json().catch(() => ({}));
    if (response.ok) {
      window.location.replace(body.redirect || "/");
    } else {
      status.textContent = "This login link was refused: " + (body.error || response.statusText);
      status.className = "error";
    }
  }).catch((err) => {
    status.textContent = "The manager did not answer: " + err;
    status.className = "error";
  });
}
