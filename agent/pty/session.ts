import { spawn } from 'node:child_process';
import type { RawData, WebSocket } from 'ws';
import { formatBytes } from '../../core/format';
import { formatDurationMs } from '../../core/duration';
import { withinMs } from '../../core/deadline';
import { dialStream } from '../../core/stream-dial';
import { closeStreamSocket } from '../../core/ws-sink';
import { startTunnel, type Tunnel } from '../../core/tunnel';
import { peerExtensions } from '../../core/peer-extensions';
import { CLOSE, type StreamRequest } from '../../wire';
import { WS_HIGH_WATER_BYTES } from '../../core/ws-sink';
import type { AuditRecord } from '../audit';
import { ptyAllowsExec, type PtyServiceConfig } from '../config';
import { waitOpen, type SessionContext } from '../stream-session';
import { listedShells } from './config-check';
import { loadPty } from './load-pty';
import { endSession } from './process-group';
import { PtyStream, type PtyExit } from './pty-stream';
import { ExecStream } from './exec-stream';
import { readStartMessage, type StartRequest } from './start-message';
import { currentUser, findSetpriv, isDirectory, lookupUser, type UserEntry } from './user';
import { inOwnScope, systemdRunForScopes } from './own-scope';

export const DEFAULT_TERM = 'xterm-256color';
export const DEFAULT_COLS = 80;
export const DEFAULT_ROWS = 24;
/** A side longer than this is a malformed resize, not a screen (a 4K monitor at a tiny font is ~700 columns). */
const MAX_TERMINAL_SIDE = 4096;
/** Malformed control messages logged per session; the rest are only counted. */
const BAD_CONTROL_LOGGED = 3;
const ROOT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const USER_PATH = '/usr/local/bin:/usr/bin:/bin';

interface SpawnPlan {
  file: string;
  args: string[];
  /** On a terminal (node-pty), or with pipes and stderr apart (a command from a script). */
  tty: boolean;
  cwd: string;
  env: Record<string, string>;
  user: UserEntry;
}

type SessionResult = Omit<AuditRecord, 'request_id' | 'service' | 'target'>;

/**
 * One accepted stream to a PTY service: a fresh terminal running the configured shell, as the
 * configured user, joined to the streaming WebSocket. Binary frames are terminal bytes; text frames
 * carry resizes in and the exit status out. However the stream ends, the terminal's whole session
 * (every process in it) is ended: SIGHUP, SIGTERM, SIGKILL.
 */
export class PtyStreamSession {
  private tunnel?: Tunnel;
  private abortedWith?: { code: number; reason: string };
  private userName?: string;

  constructor(
    private readonly req: StreamRequest,
    private readonly service: PtyServiceConfig,
    private readonly ctx: SessionContext,
  ) {}

  get streamName(): string {
    return this.req.streamName;
  }

  get targetName(): string {
    return `pty:${this.service.pty.command}`;
  }

  /** Who the shell runs as (known once the session has started). */
  get user(): string | undefined {
    return this.userName;
  }

  /** Who the session runs as; throws a sentence for the service side. */
  private async resolveUser(): Promise<UserEntry> {
    const cfg = this.service.pty;
    if (!cfg.allow_any_command && !listedShells().has(cfg.command)) {
      throw new Error(`${cfg.command} is not listed in /etc/shells`);
    }
    const me = currentUser();
    if (!cfg.user || cfg.user === me.name) return me;
    if (me.uid !== 0) throw new Error(`the agent runs as ${me.name}, not root, so it cannot start a shell as ${cfg.user}`);
    const entry = await lookupUser(cfg.user);
    if (!entry) throw new Error(`user ${cfg.user} does not exist on the device`);
    return entry;
  }

  /**
   * The command line and the environment for what the service asked: the shell (on a terminal, or
   * with pipes), or one command run by the shell with `-c`, as sshd does. Throws a sentence.
   */
  private plan(user: UserEntry, start: StartRequest | undefined): SpawnPlan {
    const cfg = this.service.pty;
    if (start?.argv && !ptyAllowsExec(this.service)) {
      throw new Error(`service "${this.req.streamName}" does not run commands (pty.exec is off)`);
    }
    const tty = start?.tty ?? true;
    let file = cfg.command;
    let args = start?.argv ? ['-c', start.argv.join(' ')] : cfg.args;
    if (user.uid !== currentUser().uid) {
      // node-pty's own uid/gid option keeps root's supplementary groups; setpriv sets all three.
      const setpriv = findSetpriv();
      if (!setpriv) throw new Error('setpriv (util-linux) is missing, so the shell cannot drop to another user');
      args = ['--reuid', String(user.uid), '--regid', String(user.gid), '--init-groups', '--', file, ...args];
      file = setpriv;
    }
    // Out of the agent's cgroup: a shell user cannot notify systemd for the agent or spend its limits.
    ({ file, args } = inOwnScope(file, args, systemdRunForScopes(this.ctx.log), `${user.name} via stream ${this.req.streamName}`));
    const env: Record<string, string> = {
      HOME: user.home,
      USER: user.name,
      LOGNAME: user.name,
      SHELL: cfg.command,
      PATH: user.uid === 0 ? ROOT_PATH : USER_PATH,
      // Without a terminal there is no terminal type (sshd sets TERM only with a pty).
      ...(tty ? { TERM: DEFAULT_TERM } : {}),
      ...cfg.env,
    };
    return { file, args, tty, cwd: isDirectory(user.home) ? user.home : '/', env, user };
  }

  async run(): Promise<SessionResult> {
    const started = Date.now();
    const elapsed = (): number => Date.now() - started;
    const none = { bytes_to_target: 0, bytes_from_target: 0 };
    const ws = dialStream(this.req.url, this.req.authToken, this.ctx.caPem, this.ctx.dial);
    ws.on('error', () => undefined); // reported through the promises below
    const [wsResult, userResult] = await Promise.allSettled([waitOpen(ws), this.resolveUser()]);
    if (wsResult.status === 'rejected') {
      ws.terminate();
      return { outcome: 'stream-failed', ...none, duration_ms: elapsed(), reason: `streaming endpoint: ${(wsResult.reason as Error).message}` };
    }
    if (userResult.status === 'rejected') {
      const reason = `shell not started: ${(userResult.reason as Error).message}`;
      closeStreamSocket(ws, CLOSE.TARGET_UNAVAILABLE, reason);
      return { outcome: 'target-unavailable', ...none, duration_ms: elapsed(), reason };
    }
    const user = userResult.value;
    this.userName = user.name;
    // A service of this build says first what to start (a command, with or without a terminal).
    const decision = await readStartMessage(ws, peerExtensions(ws));
    let plan: SpawnPlan;
    try {
      if (decision.invalid) throw new Error(decision.invalid);
      plan = this.plan(user, decision.start);
    } catch (err) {
      const reason = `${decision.start?.argv || decision.invalid ? 'command' : 'shell'} not started: ${(err as Error).message}`;
      closeStreamSocket(ws, CLOSE.TARGET_UNAVAILABLE, reason);
      return { outcome: 'target-unavailable', ...none, duration_ms: elapsed(), reason, user: user.name };
    }
    if (this.abortedWith) {
      closeStreamSocket(ws, this.abortedWith.code, this.abortedWith.reason);
      return { outcome: 'closed', ...none, duration_ms: elapsed(), reason: this.abortedWith.reason, user: user.name };
    }
    let local: PtyStream | ExecStream;
    try {
      local = plan.tty ? await this.spawnPty(plan) : await this.spawnPipes(plan, ws);
    } catch (err) {
      const reason = `shell not started: ${(err as Error).message.split('\n')[0]}`;
      closeStreamSocket(ws, CLOSE.TARGET_UNAVAILABLE, reason);
      return { outcome: 'target-unavailable', ...none, duration_ms: elapsed(), reason, user: user.name };
    }
    return this.join(local, ws, plan, started, decision.replay, decision.start?.argv ? 'command' : 'shell');
  }

  private async spawnPty(plan: SpawnPlan): Promise<PtyStream> {
    const api = await loadPty();
    return new PtyStream(api.spawn(plan.file, plan.args, { name: plan.env.TERM ?? DEFAULT_TERM, cols: DEFAULT_COLS, rows: DEFAULT_ROWS, cwd: plan.cwd, env: plan.env, encoding: null }));
  }

  /**
   * The command with pipes, in a session of its own (detached: setsid), so that its end ends every
   * process it started, as with a terminal. stderr goes to the service in `stderr` messages.
   */
  private spawnPipes(plan: SpawnPlan, ws: WebSocket): Promise<ExecStream> {
    const child = spawn(plan.file, plan.args, { cwd: plan.cwd, env: plan.env, detached: true, stdio: 'pipe' });
    const stream = new ExecStream(
      child,
      (chunk) => this.tunnel?.sendControl({ type: 'stderr', data: chunk.toString('base64') }),
      () => ws.bufferedAmount > WS_HIGH_WATER_BYTES,
    );
    return new Promise((resolve, reject) => {
      child.once('spawn', () => resolve(stream));
      child.once('error', reject);
    });
  }

  private async join(
    pty: PtyStream | ExecStream,
    ws: WebSocket,
    plan: SpawnPlan,
    started: number,
    replay: Array<[RawData, boolean]>,
    mode: 'shell' | 'command',
  ): Promise<SessionResult> {
    const { log } = this.ctx;
    const cfg = this.service.pty;
    // forkpty and setsid make the child a session leader: its pid is the session id
    const sid = pty.pid;
    log.info({ pid: sid, user: plan.user.name, mode, tty: plan.tty }, `${mode} started${plan.tty ? '' : ' without a terminal'}`);
    if (plan.user.uid === 0 && !cfg.user) log.warn('the shell runs as root: set pty.user to run it as someone else');
    // A normal close from the service side ends only our input; the shell would run on until the
    // tunnel's linger timer. Hang the terminal up at once instead. (Without a terminal the end of
    // input is an eof message, and the close means the service is gone.)
    let hangup: Promise<unknown> = Promise.resolve();
    const hangUp = (): void => {
      if (!pty.exit) hangup = endSession(sid);
    };
    if (pty instanceof PtyStream) pty.once('hangup', hangUp);
    else ws.once('close', hangUp);
    let idleTimer: NodeJS.Timeout | undefined;
    const armIdle = (): void => {
      if (!cfg.idle_timeout) return;
      clearTimeout(idleTimer);
      idleTimer = setTimeout(() => this.tunnel?.close(CLOSE.LIMIT, `idle for ${formatDurationMs(cfg.idle_timeout!)}`), cfg.idle_timeout);
    };
    const maxTimer = cfg.max_duration
      ? setTimeout(() => this.tunnel?.close(CLOSE.LIMIT, `session reached max_duration ${formatDurationMs(cfg.max_duration!)}`), cfg.max_duration)
      : undefined;
    armIdle();
    let badControl = 0;
    this.tunnel = startTunnel(pty, ws, {
      halfClose: false,
      ...(this.ctx.pingIntervalMs ? { pingIntervalMs: this.ctx.pingIntervalMs } : {}),
      onActivity: () => {
        armIdle();
        this.ctx.onActivity?.();
      },
      onControl: (msg, raw) => {
        if (!msg) {
          // A peer can send these in a loop: the first few are logged, the rest counted.
          if (++badControl <= BAD_CONTROL_LOGGED) log.warn({ length: raw.length }, 'malformed control message ignored');
          return;
        }
        if (msg.type !== 'resize') return log.debug({ type: msg.type.slice(0, 32) }, 'unknown control message ignored');
        const { cols, rows } = msg;
        if (!Number.isInteger(cols) || !Number.isInteger(rows) || (cols as number) < 1 || (rows as number) < 1 || (cols as number) > MAX_TERMINAL_SIDE || (rows as number) > MAX_TERMINAL_SIDE) {
          if (++badControl <= BAD_CONTROL_LOGGED) log.warn({ cols: String(cols).slice(0, 16), rows: String(rows).slice(0, 16) }, 'bad resize ignored');
          return;
        }
        try {
          if (pty instanceof PtyStream) pty.resize(cols as number, rows as number);
        } catch (err) {
          log.debug({ err }, 'resize failed');
        }
      },
      finalControl: () => (pty.exit ? { type: 'exit', code: pty.exit.code, signal: pty.exit.signal } : undefined),
    });
    // What the service sent while we waited for its start message, in order, as if just received.
    for (const [data, isBinary] of replay) ws.emit('message', data, isBinary);
    if (this.abortedWith) this.tunnel.close(this.abortedWith.code, this.abortedWith.reason);
    const r = await this.tunnel.done;
    clearTimeout(idleTimer);
    clearTimeout(maxTimer);
    // Whoever ended it, nothing of the session outlives the stream (background jobs included).
    await hangup;
    const ended = await endSession(sid);
    if (ended.left.length) log.error({ pids: ended.left }, 'processes of the session survived SIGKILL');
    pty.destroy();
    const exit: PtyExit | undefined = pty.exit ?? (await withinMs(pty.exited, 1000));
    const how = exit ? (exit.signal ? `shell killed by ${exit.signal}` : `shell exited ${exit.code}`) : 'shell state unknown';
    const reason = r.error
      ? `error: ${(r.error as NodeJS.ErrnoException).code ?? r.error.message}`
      : `${r.endedBy} closed${r.closeReason ? `: ${r.closeReason}` : ''} (${r.closeCode}), ${how}`;
    log[r.clean ? 'info' : 'warn'](
      { bytes_to_target: r.bytesIn, bytes_from_target: r.bytesOut, close_code: r.closeCode, exit_code: exit?.code, exit_signal: exit?.signal, ...(badControl ? { bad_control_messages: badControl } : {}) },
      `shell session closed: ${reason}, sent ${formatBytes(r.bytesOut)} received ${formatBytes(r.bytesIn)}`,
    );
    return {
      outcome: 'closed',
      bytes_to_target: r.bytesIn,
      bytes_from_target: r.bytesOut,
      duration_ms: Date.now() - started,
      reason,
      user: plan.user.name,
      exit_code: exit?.code ?? null,
      exit_signal: exit?.signal ?? null,
      mode,
      tty: plan.tty,
    };
  }

  /** Ends the stream from the device side (shutdown, limits); the session's processes follow. */
  close(code: number, reason: string): void {
    if (this.tunnel) this.tunnel.close(code, reason);
    else this.abortedWith = { code, reason };
  }
}
