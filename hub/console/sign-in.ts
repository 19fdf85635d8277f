import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../../core/log';
import { printableAscii } from '../../core/terminal-text';
import { RateLimiter } from '../rate-limit';
import { MAX_NAME_CHARS, fromSameOrigin, readJsonBody, sendJson } from './http-util';
import type { OperatorCheck } from './operator-check';
import { sessionCookie, type SessionStore } from './sessions';

/** Sign-in attempts per remote address: a burst, then one a second. */
export const SIGN_IN_LIMIT = { burst: 10, perSecond: 1 };
/** Longest key read from a sign-in body. */
const MAX_KEY_CHARS = 1024;

/**
 * `POST /console/api/login` with `{"operator", "key"}` as JSON from the console's own origin (a
 * cross-site form cannot send one): a new session and its cookie, or "wrong operator or key".
 * Throttled per address; the key is never logged.
 */
export class SignIn {
  private readonly limiter = new RateLimiter(SIGN_IN_LIMIT);

  constructor(
    private readonly deps: {
      operators: OperatorCheck;
      sessions: SessionStore;
      log: Logger;
      /** The connection that signed in counts as authenticated (hub/admission.ts). */
      onAuthenticated?: (socket: IncomingMessage['socket']) => void;
    },
  ) {}

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const remote = req.socket.remoteAddress ?? '';
    if (!fromSameOrigin(req) || !/^application\/json\b/i.test(req.headers['content-type'] ?? '')) {
      req.resume();
      return sendJson(res, 403, { error: 'cross-site request refused' });
    }
    const wait = this.limiter.take(remote);
    if (wait) {
      req.resume();
      return sendJson(res, 429, { error: `too many sign-in attempts: retry in ${wait} s` }, { 'retry-after': String(wait) });
    }
    const body = await readJsonBody(req);
    if (body === 'too-large') return sendJson(res, 413, { error: 'sign-in body too large' }, { connection: 'close' });
    if (body === 'malformed') return sendJson(res, 400, { error: 'sign-in wants a JSON object {"operator", "key"}' });
    const operator = typeof body.operator === 'string' ? body.operator.slice(0, MAX_NAME_CHARS) : '';
    const key = typeof body.key === 'string' ? body.key.slice(0, MAX_KEY_CHARS) : '';
    const ok = operator && key ? this.deps.operators.verify(operator, key) : undefined;
    if (!ok) {
      this.deps.log.warn({ operator: printableAscii(operator, 100), remote }, 'console sign-in refused: wrong operator or key');
      return sendJson(res, 401, { error: 'wrong operator or key' });
    }
    const session = this.deps.sessions.create(ok.operator, ok.revision);
    this.deps.onAuthenticated?.(req.socket);
    this.deps.log.info({ operator: ok.operator, remote }, 'console sign-in');
    sendJson(res, 200, { operator: ok.operator, csrf: session.csrf }, { 'set-cookie': sessionCookie(session.id) });
  }}
