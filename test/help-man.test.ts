import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EXIT } from '../cli/exit-codes';
import { allCommands } from '../cli/help';
import { buildProgram } from '../cli/main';

/** Every subcommand the CLI has is in the man page, and so is every exit code. */
describe('the man page (packaging/devstreams.1)', () => {
  const man = readFileSync(join(__dirname, '../packaging/devstreams.1'), 'utf8');

  it('names every subcommand, nested ones included', () => {
    const names = allCommands(buildProgram()).map((c) => c.name);
    expect(names.length).toBeGreaterThan(15);
    for (const name of names) {
      const last = name.split(' ').pop()!;
      expect({ name, inMan: new RegExp(`\\.B (devstreams (hub )?)?${last.replace(/-/g, '\\\\?-')}\\b`).test(man) }).toEqual({ name, inMan: true });
    }
  });

  it('lists every exit code of the table', () => {
    for (const code of Object.values(EXIT)) expect(man).toMatch(new RegExp(`^\\.B ${code}$`, 'm'));
  });
});

describe('bash completion (devstreams completion)', () => {
  it('completes subcommands, hub subcommands and options from the command tree', async () => {
    const { execFileSync } = await import('node:child_process');
    const { runCliToEnd } = await import('./helpers/cli');
    const { writeFileSync, mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const r = await runCliToEnd(['completion']);
    expect(r.code).toBe(0);
    const dir = mkdtempSync(join(tmpdir(), 'devstreams-completion-'));
    try {
      writeFileSync(join(dir, 'c.sh'), `${r.stdout}\n`);
      const complete = (...words: string[]): string =>
        execFileSync('bash', ['-c', `source ${join(dir, 'c.sh')}; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _devstreams; echo "\${COMPREPLY[*]}"`, 'bash', 'devstreams', ...words], { encoding: 'utf8' }).trim();
      expect(complete('sh')).toBe('shell');
      expect(complete('hub', 'add')).toBe('add-device add-operator');
      expect(complete('shell', '--t')).toBe('--tty --timeout');
      expect(complete('hub', 'add-device', '--d')).toBe('--data-dir');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('output into a closed pipe', () => {
  it('--help into a pipe nobody reads ends quietly with 0 (no EPIPE stack trace)', async () => {
    const { spawn } = await import('node:child_process');
    const { BUNDLE } = await import('./helpers/cli');
    const p = spawn(process.execPath, [BUNDLE, '--help'], { stdio: ['ignore', 'pipe', 'pipe'] });
    p.stdout.destroy(); // our read end closed before the child writes: its write gets EPIPE
    let stderr = '';
    p.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((r) => p.on('close', r));
    expect(stderr).not.toMatch(/EPIPE|Unhandled/);
    expect(code).toBe(0);
  });
});
