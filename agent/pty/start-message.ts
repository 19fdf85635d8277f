import type { RawData, WebSocket } from 'ws';
import type { PeerExtensions } from '../../core/peer-extensions';
import { HELLO_TYPE, decodeControl } from '../../wire';

/**
 * How long a service that announced `exec` has to send its start message before the session starts
 * the shell on a terminal anyway (a peer that announced it but does not follow the rule).
 */
export const START_WAIT_MS = 5_000;
/** decodeControl's limit: a longer text frame is no control message at all. */
const MAX_CONTROL_CHARS = 4096;
/** Longest command line accepted (the whole message must fit a control frame's 4096 characters). */
export const MAX_COMMAND_CHARS = 3_500;

export interface StartRequest {
  /** Undefined: the service's shell itself. */
  argv?: string[];
  tty: boolean;
}

export interface StartDecision {
  /** What the service asked for; undefined: a shell on a terminal (an older service, or none asked). */
  start?: StartRequest;
  /** A start message that cannot be run (malformed, too long): the reason for the service side. */
  invalid?: string;
  /** Frames that arrived after the decision (or were not a start message), for the tunnel, in order. */
  replay: Array<[RawData, boolean]>;
}

/** A text frame that was meant as a start message: too long for any control message, or an exec. */
function looksLikeStart(data: RawData): boolean {
  const text = data.toString();
  return text.length > MAX_CONTROL_CHARS || /^\s*\{\s*"type"\s*:\s*"exec"/.test(text);
}

function parseStart(msg: Record<string, unknown>): StartRequest | string {
  const { argv, tty } = msg;
  if (typeof tty !== 'boolean') return 'the start message has no tty flag';
  if (argv === undefined) return { tty };
  if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a): a is string => typeof a === 'string')) return 'the command must be a non-empty list of strings';
  if (argv.some((a) => a.includes('\0'))) return 'the command contains a NUL byte';
  if (argv.join(' ').length > MAX_COMMAND_CHARS) return `the command is longer than ${MAX_COMMAND_CHARS} characters`;
  return { argv, tty };
}

/**
 * The first thing a service says on a PTY stream. A service that announced `exec` starts with an
 * `exec` message; anything else first (bytes, a resize), a service without `exec`, or silence for
 * START_WAIT_MS means a shell on a terminal, as before. The WebSocket must be open and paused; it
 * is read here until the decision and left paused, with the frames read past it in `replay`.
 */
export function readStartMessage(ws: WebSocket, peer: PeerExtensions, waitMs = START_WAIT_MS): Promise<StartDecision> {
  return new Promise((resolve) => {
    const replay: Array<[RawData, boolean]> = [];
    let decided = false;
    let timer: NodeJS.Timeout | undefined;
    const decide = (d: Omit<StartDecision, 'replay'>): void => {
      if (decided) return;
      decided = true;
      clearTimeout(timer);
      ws.pause();
      // Frames already parsed still arrive after pause(); keep them, in order, until handed over.
      setImmediate(() => {
        ws.off('message', onMessage);
        ws.off('close', onClose);
        resolve({ ...d, replay });
      });
    };
    const onMessage = (data: RawData, isBinary: boolean): void => {
      if (decided) return void replay.push([data, isBinary]);
      const msg = isBinary ? null : decodeControl(data.toString());
      if (msg?.type === HELLO_TYPE) return; // the hub's, read by the negotiation
      // A start message we cannot read (over a control frame's 4096 characters, or a broken exec)
      // is refused: handing that service a shell instead of its command would run the wrong thing.
      // Other unreadable text first is only noise before a shell, as it always was.
      if (!isBinary && !msg && peer.has('exec') && looksLikeStart(data)) return decide({ invalid: 'the start message is malformed or longer than 4096 characters' });
      if (msg?.type === 'exec' && peer.has('exec')) {
        const parsed = parseStart(msg);
        return decide(typeof parsed === 'string' ? { invalid: parsed } : { start: parsed });
      }
      replay.push([data, isBinary]);
      decide({});
    };
    const onClose = (): void => decide({});
    ws.on('message', onMessage);
    ws.on('close', onClose);
    peer.whenKnown((names) => {
      if (!names.has('exec')) decide({});
      else timer = setTimeout(() => decide({}), waitMs);
    });
    ws.resume();
  });
}
