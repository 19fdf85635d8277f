/** The console's calls to the hub: same origin, the session cookie, the CSRF token on changes. */
let csrf = '';

export interface SessionInfo {
  operator: string;
  csrf: string;
  /** Where devices' own pages are served (their own origin); null: off on this hub. */
  devicePagesPort: number | null;
}

export async function loadSession(): Promise<SessionInfo | undefined> {
  const res = await fetch('/console/api/session', { credentials: 'same-origin' });
  if (res.status === 401) return undefined;
  if (!res.ok) throw new Error(`session: HTTP ${res.status}`);
  const s = (await res.json()) as SessionInfo;
  csrf = s.csrf;
  return s;
}

export async function post(path: string, body: unknown = {}): Promise<Response> {
  return fetch(path, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'content-type': 'application/json', 'x-devstreams-csrf': csrf },
    body: JSON.stringify(body),
  });
}
