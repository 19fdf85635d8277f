import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inOwnScope, SHELL_SLICE } from '../agent/pty/own-scope';
import { BUNDLE } from './helpers/cli';
import { until } from './helpers/stack';

/**
 * What systemd would accept from the agent's notifications, measured: a notify socket that reads the
 * sender's credentials (SO_PASSCRED, as systemd does) in front of a real agent process. Every message
 * comes from a systemd-notify child, never from the agent's own pid, so `NotifyAccess=main` would drop
 * READY and every WATCHDOG ping (systemd would kill the agent at the watchdog timeout); `--pid=` only
 * adds MAINPID= to the message, the sender stays the helper. Any other process can send too, so under
 * `NotifyAccess=all` systemd's only filter is the control group: shells go to a scope of their own.
 */
const havePython = spawnSync('python3', ['-c', 'import socket; socket.SO_PASSCRED']).status === 0;
/**
 * The unit gives the agent no CAP_SYS_ADMIN (CapabilityBoundingSet= empty, or the shell drop-in's
 * list without it); with it, systemd-notify could write the caller's pid into the credentials and
 * the measurement would not be the unit's. As root here, drop it the way the unit does.
 */
const isRoot = process.getuid?.() === 0;
function withoutSysAdmin(file: string, args: string[]): [string, string[]] {
  return isRoot ? ['setpriv', ['--bounding-set=-sys_admin', '--', file, ...args]] : [file, args];
}
const haveNotify = spawnSync('systemd-notify', ['--help']).status === 0;

const RECEIVER = `
import json, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
print(json.dumps({"ready": True}), flush=True)
while True:
    msg, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12))
    pid = None
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid, uid, gid = struct.unpack("iII", data[:12])
    print(json.dumps({"pid": pid, "msg": msg.decode()}), flush=True)
`;

describe.runIf(havePython && haveNotify)('sd_notify as systemd sees it (real agent, real notify socket)', () => {
  let dir: string;
  let receiver: ChildProcess;
  let agent: ChildProcess;
  let agentExited: Promise<unknown>;
  const messages: Array<{ pid: number; msg: string }> = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'devstreams-notify-'));
    const socketPath = join(dir, 'notify');
    receiver = spawn('python3', ['-c', RECEIVER, socketPath], { stdio: ['ignore', 'pipe', 'inherit'] });
    let partial = '';
    let bound = false;
    receiver.stdout!.on('data', (d: Buffer) => {
      const lines = (partial + d.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        const m = JSON.parse(line) as { ready?: boolean; pid: number; msg: string };
        if (m.ready) bound = true;
        else messages.push(m);
      }
    });
    await until(() => bound, 'the notify socket');
    const secret = join(dir, 'cs');
    writeFileSync(secret, `HostName=127.0.0.1:1;DeviceId=pi-n;SharedAccessKey=${Buffer.alloc(32, 5).toString('base64')}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'agent.yaml'), `hub:\n  connection_string_file: ${secret}\nstatus_file: ${join(dir, 'status.json')}\ntelemetry:\n  interval: off\nservices: {}\n`);
    // As systemd starts a Type=notify unit with WatchdogSec=2s.
    const [file, args] = withoutSysAdmin(process.execPath, [BUNDLE, 'agent', '--config', join(dir, 'agent.yaml')]);
    agent = spawn(file, args, { env: { ...process.env, NOTIFY_SOCKET: socketPath, WATCHDOG_USEC: '2000000' }, stdio: 'ignore' });
    agentExited = new Promise((r) => agent.on('exit', r));
  });

  afterAll(async () => {
    agent?.kill('SIGTERM');
    await agentExited;
    receiver?.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  it('READY and WATCHDOG come from a helper pid, never the agent\'s: NotifyAccess=main would drop them', async () => {
    await until(() => messages.some((m) => m.msg.includes('READY=1')) && messages.filter((m) => m.msg === 'WATCHDOG=1').length >= 2, 'READY and two watchdog pings', 20_000);
    const agentPid = agent.pid!;
    expect(messages.length).toBeGreaterThanOrEqual(3);
    for (const m of messages) {
      expect(m.pid).not.toBe(agentPid);
      expect(m.pid).toBeGreaterThan(0);
    }
  });

  it('`systemd-notify --pid=` only adds MAINPID=, and any process may send WATCHDOG=trigger: the cgroup is the only filter', async () => {
    const socketPath = join(dir, 'notify');
    const before = messages.length;
    const [file, args] = withoutSysAdmin('systemd-notify', [`--pid=${agent.pid}`, 'WATCHDOG=trigger']);
    const helper = spawnSync(file, args, { env: { ...process.env, NOTIFY_SOCKET: socketPath } });
    expect(helper.status).toBe(0);
    await until(() => messages.slice(before).some((m) => m.msg.includes('WATCHDOG=trigger')), 'the stranger\'s message');
    const m = messages.slice(before).find((x) => x.msg.includes('WATCHDOG=trigger'))!;
    expect(m.msg).toContain(`MAINPID=${agent.pid}`);
    expect(m.pid).not.toBe(agent.pid);
  });
});

describe('shell sessions in a scope of their own', () => {
  it('wraps the session command in systemd-run --scope when systemd is there, and leaves it alone otherwise', () => {
    expect(inOwnScope('/usr/bin/setpriv', ['--reuid', '1000', '--', '/bin/bash', '-l'], undefined, 'pi via stream shell')).toEqual({ file: '/usr/bin/setpriv', args: ['--reuid', '1000', '--', '/bin/bash', '-l'] });
    const wrapped = inOwnScope('/usr/bin/setpriv', ['--reuid', '1000', '--', '/bin/bash', '-l'], '/usr/bin/systemd-run', 'pi via stream \u001b[2Jshell');
    expect(wrapped.file).toBe('/usr/bin/systemd-run');
    expect(wrapped.args.slice(0, 5)).toEqual(['--scope', '--quiet', '--collect', expect.stringMatching(new RegExp(`^--unit=devstreams-shell-${process.pid}-\\d+$`)), `--slice=${SHELL_SLICE}`]);
    expect(wrapped.args[5]).toBe('--description=devstreams shell: pi via stream ?[2Jshell');
    expect(wrapped.args.slice(6)).toEqual(['--', '/usr/bin/setpriv', '--reuid', '1000', '--', '/bin/bash', '-l']);
  });
});
