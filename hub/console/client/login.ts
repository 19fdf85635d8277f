/** The sign-in page: posts the operator and key as JSON, then goes to the console. */
const form = document.getElementById('login') as HTMLFormElement;
const error = document.getElementById('login-error') as HTMLElement;

form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const data = new FormData(form);
  error.textContent = '';
  fetch('/console/api/login', {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ operator: data.get('operator'), key: data.get('key') }),
  })
    .then(async (res) => {
      if (res.ok) return void location.assign('/console/');
      const body = (await res.json().catch(() => ({}))) as { error?: string };
      error.textContent = body.error ?? `sign-in failed (HTTP ${res.status})`;
    })
    .catch((err: Error) => {
      error.textContent = `the hub did not answer: ${err.message}`;
    });
});
