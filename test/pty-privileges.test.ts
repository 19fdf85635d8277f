import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeControl } from '../wire';
import { startStack, until, type Stack } from './helpers/stack';

/** A throwaway user for the drop; created here when missing, removed again afterwards. */
const USER = 'devstreams-pty';
const GROUP = 'dialout'; // a supplementary group, to show initgroups ran (Debian always has it)
const isRoot = process.getuid?.() === 0;

function userExists(name: string): boolean {
  try {
    execFileSync('getent', ['passwd', name], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

async function runInShell(stack: Stack, service: string, command: string): Promise<{ out: string; close: { code: number; reason: string } }> {
  const ws = await stack.client.openStream(await stack.client.requestStream('pi-001', service));
  let out = '';
  ws.on('message', (data, isBinary) => {
    if (isBinary) out += (data as Buffer).toString();
    else if (decodeControl(data.toString())?.type === 'exit') out += '\n[exit]';
  });
  const close = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  ws.resume();
  ws.send(Buffer.from(`${command}; exit\n`), { binary: true });
  return { out: await close.then(() => out), close: await close };
}

describe.skipIf(!isRoot)('PTY privilege drop (the agent runs as root)', () => {
  let stack: Stack;
  let created = false;

  beforeAll(async () => {
    if (!userExists(USER)) {
      execFileSync('useradd', ['--create-home', '--shell', '/bin/sh', '--groups', GROUP, USER]);
      created = true;
    }
    stack = await startStack();
    await stack.startAgent(
      [
        '  shell:',
        '    pty:',
        '      command: /bin/sh',
        `      user: ${USER}`,
        '  ghost:',
        '    pty:',
        '      command: /bin/sh',
        '      user: no-such-user-here',
        '',
      ].join('\n'),
    );
  });
  afterAll(async () => {
    await stack?.stop();
    if (created) execFileSync('userdel', ['--remove', USER], { stdio: 'ignore' });
  });

  it('runs the shell as the configured user, with its groups and environment, and none of root', async () => {
    const { out } = await runInShell(stack, 'shell', 'echo "who=$(id -un) uid=$(id -u) groups=$(id -Gn | tr " " ,) home=$HOME user=$USER shell=$SHELL pwd=$(pwd)"');
    const m = /who=(\S+) uid=(\d+) groups=(\S+) home=(\S+) user=(\S+) shell=(\S+) pwd=(\S+)/.exec(out);
    expect(m, out).not.toBeNull();
    const [, who, uid, groups, home, user, shell, pwd] = m!;
    expect(who).toBe(USER);
    expect(Number(uid)).not.toBe(0);
    expect(groups!.split(',')).toContain(GROUP);
    expect(groups!.split(',')).not.toContain('root');
    expect(home).toBe(`/home/${USER}`);
    expect(user).toBe(USER);
    expect(shell).toBe('/bin/sh');
    expect(pwd).toBe(`/home/${USER}`);
  });

  it('ends the dropped session when the service side goes away', async () => {
    const ws = await stack.client.openStream(await stack.client.requestStream('pi-001', 'shell'));
    let out = '';
    ws.on('message', (d, isBinary) => isBinary && (out += (d as Buffer).toString()));
    ws.resume();
    ws.send(Buffer.from('echo "sid=$$"; sleep 1000\n'), { binary: true });
    await until(() => /sid=(\d+)/.test(out), 'the shell to say its pid');
    const sid = /sid=(\d+)/.exec(out)![1]!;
    ws.terminate();
    await until(() => {
      try {
        execFileSync('ps', ['-o', 'pid=', '-s', sid], { stdio: 'ignore' });
        return false; // ps exits 0 while some process of the session is left
      } catch {
        return true;
      }
    }, 'the session to end');
  });

  it('refuses with a reason when the user does not exist', async () => {
    const { close } = await runInShell(stack, 'ghost', 'id');
    expect(close.code).toBe(4001);
    expect(close.reason).toMatch(/user no-such-user-here does not exist/);
  });
});
