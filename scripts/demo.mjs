// `make run`: a local hub and agent on embedded defaults, a demo web service on the "device", and
// `connect` ports that reach it, with a self-check that a stream works. Everything runs from
// dist/devstreams.cjs as a user would run it; state lives in .demo/ (delete it to start over).
// DEMO_CHECK=1 exits after the self-check (the test suite uses that).
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync, existsSync } from 'node:fs';
import { createServer as createHttpServer, get as httpGet } from 'node:http';
import { connect as netConnect } from 'node:net';
import { join, resolve } from 'node:path';

const root = resolve(new URL('..', import.meta.url).pathname);
const bundle = join(root, 'dist', 'devstreams.cjs');
const state = resolve(process.env.DEMO_DIR ?? join(root, '.demo'));
const hubDir = join(state, 'hub');
const check = process.env.DEMO_CHECK === '1';
const cli = 'node dist/devstreams.cjs';
const children = [];

function run(args, env = {}) {
  const child = spawn(process.execPath, [bundle, ...args], {
    env: { ...process.env, DEVSTREAMS_LOG_FORMAT: 'json', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  const lines = [];
  const onData = (c) => {
    out += c.toString();
    const parts = out.split('\n');
    out = parts.pop();
    lines.push(...parts);
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  child.waitFor = (re, ms = 20_000) =>
    new Promise((res, rej) => {
      const t0 = Date.now();
      const tick = () => {
        const hit = lines.find((l) => re.test(l));
        if (hit) return res(hit);
        if (child.exitCode !== null) return rej(new Error(`devstreams ${args[0]} exited:\n${lines.slice(-10).join('\n')}`));
        if (Date.now() - t0 > ms) return rej(new Error(`devstreams ${args[0]} did not print ${re}:\n${lines.slice(-10).join('\n')}`));
        setTimeout(tick, 50);
      };
      tick();
    });
  child.lines = lines;
  return child;
}

async function runToEnd(args, env = {}) {
  const child = run(args, env);
  const code = await new Promise((r) => child.on('exit', r));
  await new Promise((r) => setImmediate(r));
  if (code !== 0) throw new Error(`devstreams ${args.join(' ')} failed:\n${child.lines.join('\n')}`);
  return child.lines.filter((l) => !l.startsWith('{')).pop();
}

/** `  command   # comment` lines with the comments in one column. */
function aligned(rows) {
  const width = Math.max(...rows.map(([c]) => c.length));
  return rows.map(([c, note]) => `  ${c.padEnd(width)}   # ${note}`);
}

function portOpen(port) {
  return new Promise((res) => {
    const s = netConnect({ host: '127.0.0.1', port }, () => {
      s.destroy();
      res(true);
    });
    s.on('error', () => res(false));
  });
}

function stopAll(code) {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  setTimeout(() => process.exit(code), 300).unref();
}

async function main() {
  if (!existsSync(bundle)) throw new Error(`${bundle} is missing: run "make build"`);
  mkdirSync(state, { recursive: true });

  // The "device's" own service: a tiny web page only reachable on its loopback.
  const web = createHttpServer((req, res) => res.end(`hello from the device (you asked for ${req.url})\n`));
  await new Promise((r) => web.listen(0, '127.0.0.1', r));
  const webPort = web.address().port;
  const sshdRunning = await portOpen(22);
  const shell = ['/bin/bash', '/bin/sh'].find((f) => existsSync(f));

  const hub = run(['hub', '--data-dir', hubDir, '--listen', `127.0.0.1:${process.env.DEMO_HUB_PORT ?? 0}`, '--device-pages-listen', '127.0.0.1:0']);
  const hubLine = await hub.waitFor(/^hub listening on /);
  const hubHost = /on (\S+)/.exec(hubLine)[1];
  await hub.waitFor(/^device pages on port \d+$/);
  const deviceString = await runToEnd(['hub', 'add-device', 'demo-pi', '--data-dir', hubDir]);
  const serviceString = await runToEnd(['hub', 'service-string', '--data-dir', hubDir]);

  const configFile = join(state, 'agent.yaml');
  writeFileSync(
    configFile,
    `# Written by make run. The allowlist: stream name -> local target on the device.\n` +
      `hub:\n  connection_string: "${deviceString}"\n  ca: ${join(hubDir, 'ca.pem')}\n` +
      `status_file: ${join(state, 'status.json')}\n` +
      `services:\n  web:\n    port: ${webPort}\n  ssh:\n    port: 22\n` +
      // A shell for the demo; it runs as whoever runs make run (a real device says user:).
      `  shell:\n    pty:\n      command: ${shell}\n`,
    { mode: 0o600 },
  );
  const agent = run(['agent', '--config', configFile]);
  await agent.waitFor(/listening for stream requests/);

  const env = { DEVSTREAMS_CONNECTION_STRING: serviceString };
  const ca = join(hubDir, 'ca.pem');
  const connectWeb = run(['connect', 'demo-pi', 'web', '--listen', `127.0.0.1:${process.env.DEMO_WEB_PORT ?? 0}`, '--ca', ca], env);
  const webLocal = /listening on (\S+),/.exec(await connectWeb.waitFor(/^listening on /))[1];
  const connectSsh = run(['connect', 'demo-pi', 'ssh', '--listen', `127.0.0.1:${process.env.DEMO_SSH_PORT ?? 0}`, '--ca', ca], env);
  const sshLocal = /listening on (\S+),/.exec(await connectSsh.waitFor(/^listening on /))[1];

  // Self-check: one real stream, service -> hub -> agent -> device web service.
  const body = await new Promise((res, rej) => {
    httpGet(`http://${webLocal}/self-check`, (r) => {
      let b = '';
      r.on('data', (c) => (b += c));
      r.on('end', () => res(b));
    }).on('error', rej);
  });
  if (!body.startsWith('hello from the device')) throw new Error(`self-check got: ${body}`);
  // And one command through the shell service, as a script would run it.
  const echoed = await runToEnd(['shell', '--ca', ca, 'demo-pi', '--', 'echo', 'hello from the shell'], env);
  if (echoed !== 'hello from the shell') throw new Error(`shell self-check got: ${echoed}`);

  process.stdout.write(
    [
      '',
      'devstreams demo is running: hub, agent (device "demo-pi") and two connect ports.',
      `  hub            ${hubHost}   (data: ${hubDir}, CA: ${ca})`,
      `  agent config   ${configFile}`,
      `  self-check     a stream to demo-pi/web answered: ${body.trim()}`,
      `                 shell demo-pi -- echo answered: ${echoed}`,
      '',
      'Reach the device:',
      `  curl http://${webLocal}/             # the device's web service, through the tunnel`,
      sshdRunning
        ? `  ssh -p ${sshLocal.split(':').pop()} ${process.env.USER ?? 'user'}@127.0.0.1   # the device's sshd (port 22), through the tunnel`
        : `  (no sshd on port 22 here; with one, ssh -p ${sshLocal.split(':').pop()} user@127.0.0.1 reaches it through the tunnel)`,
      '',
      'Next, in another terminal:',
      `  export DEVSTREAMS_CONNECTION_STRING='${serviceString}'`,
      ...aligned([
        [`${cli} devices --ca ${ca}`, "the hub's devices, online and health"],
        [`${cli} shell --ca ${ca} demo-pi`, 'a terminal on the device (exit or Ctrl-D leaves)'],
        [`${cli} shell --ca ${ca} demo-pi -- uname -a`, 'one command, as in a script'],
        [`${cli} status --config ${configFile}`, "the agent's own view (on the device)"],
        [`ssh -o ProxyCommand='${cli} proxy --ca ${ca} %h' ${process.env.USER ?? 'user'}@demo-pi`, `ssh by device name${sshdRunning ? '' : ' (needs an sshd on port 22)'}`],
        [`${cli} connect demo-pi web --listen 127.0.0.1:9000 --ca ${ca}`, 'your own port, like ssh -L'],
      ]),
      '  docs: docs/ssh.md (a ~/.ssh/config block for every device), docs/shell.md, docs/exit-codes.md',
      '',
      'Or in a browser (the certificate is from the hub\'s own CA: the browser warns once):',
      `  https://${hubHost}/   # the web console: operator "service", key = SharedAccessKey above (docs/console.md)`,
      '',
      check ? 'DEMO_CHECK=1: self-check passed, stopping.' : 'Ctrl-C stops everything.',
      '',
    ].join('\n'),
  );
  if (check) {
    web.close();
    stopAll(0);
  }
}

process.on('SIGINT', () => stopAll(0));
process.on('SIGTERM', () => stopAll(0));
main().catch((err) => {
  process.stderr.write(`make run failed: ${err.message}\n`);
  stopAll(1);
});
