import { describe, expect, it } from 'vitest';
import { parseAgentConfig } from '../agent/config';
import { formatDurationMs, parseDurationMs } from '../core/duration';

const CS = 'HostName=hub.example:8443;DeviceId=pi-001;SharedAccessKey=' + Buffer.alloc(32, 1).toString('base64');

function parse(services: string) {
  return parseAgentConfig(`hub:\n  connection_string: "${CS}"\nservices:\n${services}`, 'agent.yaml', {});
}

describe('PTY service config', () => {
  it('accepts a full pty service, with defaults and durations in milliseconds', () => {
    const { config, problems } = parse(
      [
        '  shell:',
        '    pty:',
        '      command: /bin/sh',
        '      args: ["-l"]',
        '      user: pi',
        '      env: { LANG: C.UTF-8 }',
        '      idle_timeout: 30m',
        '      max_duration: 1h30m',
        '  ssh:',
        '    port: 22',
        '',
      ].join('\n'),
    );
    expect(problems).toEqual([]);
    expect(config!.services.shell).toEqual({
      pty: { command: '/bin/sh', args: ['-l'], user: 'pi', env: { LANG: 'C.UTF-8' }, allow_any_command: false, max_sessions: 4, idle_timeout: 1_800_000, max_duration: 5_400_000 },
    });
    expect(config!.services.ssh).toMatchObject({ port: 22, host: '127.0.0.1' });
  });

  it('reports every problem of a pty service at its line, not "Invalid input"', () => {
    const { problems } = parse(
      [
        '  shell:', // line 4
        '    pty:',
        '      command: bin/sh',
        '      idle_timeout: 30',
        '      max_sessions: 0',
        '      colour: blue',
        '',
      ].join('\n'),
    );
    const text = problems.map((p) => `${p.line}: ${p.message}`);
    expect(text).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^6: services\.shell\.pty\.command: must be an absolute path/),
        expect.stringMatching(/^7: services\.shell\.pty\.idle_timeout: "30" is not a duration/),
        expect.stringMatching(/^8: services\.shell\.pty\.max_sessions/),
        expect.stringMatching(/^9: services\.shell\.pty\.colour is not a known setting/),
      ]),
    );
  });

  it('still reports TCP service problems as before', () => {
    const { problems } = parse('  ssh:\n    port: "twenty-two"\n');
    expect(problems.map((p) => p.message)).toEqual([expect.stringMatching(/^services\.ssh\.port must be a number, not /)]);
  });

  it('says a service is either a port or a pty', () => {
    const both = parse('  odd:\n    port: 22\n    pty: { command: /bin/sh }\n');
    expect(both.problems.map((p) => p.message)).toEqual(['services.odd has both port and pty: a service is a TCP port or a terminal, not both']);
    const neither = parse('  odd: {}\n');
    expect(neither.problems.map((p) => p.message)).toEqual(['services.odd needs port (a TCP service) or pty (a terminal)']);
  });

  it('refuses a command that is not in /etc/shells unless allow_any_command is set', () => {
    const refused = parse('  py:\n    pty:\n      command: /usr/bin/env\n');
    expect(refused.problems.map((p) => `${p.line}: ${p.message}`)).toEqual([expect.stringMatching(/^6: .*\/usr\/bin\/env is not listed in \/etc\/shells.*allow_any_command/)]);
    const allowed = parse('  py:\n    pty:\n      command: /usr/bin/env\n      allow_any_command: true\n');
    expect(allowed.problems).toEqual([]);
  });
});

describe('durations', () => {
  it('parses what people write and refuses bare numbers', () => {
    expect(parseDurationMs('90s')).toBe(90_000);
    expect(parseDurationMs('30m')).toBe(1_800_000);
    expect(parseDurationMs('1h30m')).toBe(5_400_000);
    expect(parseDurationMs('250ms')).toBe(250);
    expect(parseDurationMs('2d')).toBe(172_800_000);
    expect(parseDurationMs('30')).toBeUndefined();
    expect(parseDurationMs('m')).toBeUndefined();
    expect(parseDurationMs('1.5h')).toBeUndefined();
    expect(parseDurationMs('-5s')).toBeUndefined();
  });
  it('formats back to the shortest form', () => {
    expect(formatDurationMs(5_400_000)).toBe('1h30m');
    expect(formatDurationMs(1000)).toBe('1s');
    expect(formatDurationMs(250)).toBe('250ms');
    expect(formatDurationMs(90_061_000)).toBe('1d1h1m1s');
  });
});
