import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { fromSameOrigin, refuseUpgrade } from './http-util';
import type { OperatorCheck } from './operator-check';

/**
 * Console sessions: a random id in a cookie (`__Host-` prefix: Secure, Path=/, no Domain; HttpOnly;
 * SameSite=Strict), kept in the hub's memory only (a hub restart signs everyone out). A session ends
 * at sign-out, after an idle or an absolute limit, or as soon as its operator is removed or its key
 * changes; whatever it holds open (live updates, terminals, proxied pages) is closed with it.
 */
export const SESSION_COOKIE = '__Host-devstreams-console';
export const SESSION_IDLE_MS = 8 * 3600_000;
export const SESSION_MAX_MS = 24 * 3600_000;
/** Sessions kept at most; the least recently used goes first. */
export const MAX_SESSIONS = 1000;

export interface Session {
  id: string;
  operator: string;
  /** The operator's record revision at sign-in: a change (removal, new key, new limits) ends the session. */
  revision: string;
  /** Sent back in the `x-devstreams-csrf` header with every state change. */
  csrf: string;
  createdAt: number;
  usedAt: number;
  /** Called once when the session ends (closes its sockets). */
  readonly onEnd: Set<() => void>;
}

export function readCookie(req: IncomingMessage, name: string): string | undefined {
  const header = req.headers.cookie;
  if (!header || header.length > 8192) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

export function sessionCookie(id: string): string {
  return `${SESSION_COOKIE}=${id}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=${SESSION_MAX_MS / 1000}`;
}

export function clearedSessionCookie(): string {
  return `${SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0`;
}

export class SessionStore {
  private readonly sessions = new Map<string, Session>();
  /** Told of every request that carried a live session (its connection leaves the hub's pre-auth caps). */
  onUsed: (req: IncomingMessage) => void = () => undefined;

  constructor(
    private readonly operators: OperatorCheck,
    private readonly now: () => number = Date.now,
  ) {}

  create(operator: string, revision: string): Session {
    const t = this.now();
    const s: Session = { id: randomBytes(32).toString('base64url'), operator, revision, csrf: randomBytes(24).toString('base64url'), createdAt: t, usedAt: t, onEnd: new Set() };
    if (this.sessions.size >= MAX_SESSIONS) {
      const oldest = [...this.sessions.values()].sort((a, b) => a.usedAt - b.usedAt)[0];
      if (oldest) this.end(oldest.id);
    }
    this.sessions.set(s.id, s);
    return s;
  }

  /** The request's live session, or undefined (ending it first if it expired or lost its operator). */
  fromRequest(req: IncomingMessage): Session | undefined {
    const id = readCookie(req, SESSION_COOKIE);
    const s = id ? this.sessions.get(id) : undefined;
    if (!s) return undefined;
    if (!this.alive(s)) {
      this.end(s.id);
      return undefined;
    }
    s.usedAt = this.now();
    this.onUsed(req);
    return s;
  }

  private alive(s: Session): boolean {
    const t = this.now();
    return t - s.usedAt < SESSION_IDLE_MS && t - s.createdAt < SESSION_MAX_MS && this.operators.stillValid(s.operator, s.revision);
  }

  /** Keeps a long-lived connection's session fresh (a terminal in use is not idle). */
  touch(s: Session): void {
    s.usedAt = this.now();
  }

  end(id: string): void {
    const s = this.sessions.get(id);
    if (!s) return;
    this.sessions.delete(id);
    for (const f of s.onEnd) {
      try {
        f();
      } catch {
        // closing a socket that is already gone
      }
    }
    s.onEnd.clear();
  }

  /** Ends expired sessions and those whose operator is gone; returns how many ended. */
  sweep(): number {
    let n = 0;
    for (const s of [...this.sessions.values()]) {
      if (!this.alive(s)) {
        this.end(s.id);
        n++;
      }
    }
    return n;
  }

  endAll(): void {
    for (const id of [...this.sessions.keys()]) this.end(id);
  }

  get size(): number {
    return this.sessions.size;
  }
}

/** The session of an Upgrade from a page of the same origin; refuses the socket (and returns undefined) otherwise. */
export function sessionForUpgrade(sessions: SessionStore, req: IncomingMessage, socket: Duplex): Session | undefined {
  const session = sessions.fromRequest(req);
  if (!session) refuseUpgrade(socket, 401, 'Unauthorized');
  else if (!fromSameOrigin(req)) refuseUpgrade(socket, 403, 'Forbidden');
  else return session;
  return undefined;
}
