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
