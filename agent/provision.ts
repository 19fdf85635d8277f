import { closeSync, constants, existsSync, fstatSync, fsyncSync, lstatSync, openSync, readFileSync, readSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { isMap, parseDocument } from 'yaml';
import { syncDirectory, writeFileAtomicSync } from '../core/atomic-file';
import { parseDeviceConnectionString } from '../wire';
import { CONNECTION_STRING_ENV, ConfigError, parseAgentConfig } from './config';
import { formatFileProblem, type FileProblem } from '../core/file-problem';

/**
 * First-boot provisioning for Pi images (devstreams-firstboot.service runs `devstreams provision`).
 *
 * A person flashing a card drops, on the boot partition, `devstreams.yaml` (a whole agent config)
 * and/or `devstreams-connection-string.txt` (just the device's connection string). This installs
 * them into the config directory and removes them from the boot partition (FAT: anyone with the card
 * can read it). The secret never stays in agent.yaml: it goes to `connection-string` (root, 0600),
 * which the hardened unit hands to the agent as a systemd credential; agent.yaml (root:devstreams,
 * 0640) points at that credential. If what was dropped is invalid, nothing is installed, the dropped
 * files stay, and `devstreams-error.txt` next to them says why (readable on the PC that wrote them).
 */
export const BOOT_CONFIG_NAME = 'devstreams.yaml';
export const BOOT_CONNECTION_STRING_NAME = 'devstreams-connection-string.txt';
export const BOOT_ERROR_NAME = 'devstreams-error.txt';
export const CONFIG_FILE_NAME = 'agent.yaml';
export const CONNECTION_STRING_FILE_NAME = 'connection-string';
/** Where systemd's LoadCredential=connection-string:… in config/devstreams-agent.service puts the secret. */
export const CREDENTIAL_PATH = '/run/credentials/devstreams-agent.service/connection-string';
const CONFIG_MODE = 0o640;
const SECRET_MODE = 0o600;
/** A dropped file larger than this is refused: a config is a few KiB, a connection string 200 bytes. */
export const MAX_DROPPED_BYTES = 64 * 1024;

export interface ProvisionOptions {
  /** Searched in order; the first that holds a dropped file is used (Pi OS bookworm: /boot/firmware, bullseye: /boot). */
  bootDirs: string[];
  /** Usually /etc/devstreams. */
  configDir: string;
  /** The group that may read agent.yaml (the service's group). */
  group?: string;
  /** Where to look the group up (the target's /etc/group). */
  groupFile?: string;
}

export interface ProvisionResult {
  /** The boot directory the files came from; undefined when nothing was dropped. */
  bootDir?: string;
  installed: string[];
  removed: string[];
}

/** Why a dropped file is refused (a link, not a regular file, too large); its text otherwise. */
type Dropped = { text: string } | { refused: string };

/**
 * Reads a file someone dropped on the boot partition: a regular file of at most MAX_DROPPED_BYTES,
 * never through a link (O_NOFOLLOW: a link to /etc/shadow must not end up in the error file), never
 * blocking on a FIFO (O_NONBLOCK). Undefined when there is none.
 */
function readDropped(file: string): Dropped | undefined {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    if (code === 'ELOOP') return { refused: 'is a symbolic link: refused (drop the file itself)' };
    throw err;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return { refused: 'is not a regular file: refused' };
    if (st.size > MAX_DROPPED_BYTES) return { refused: `is ${st.size} bytes: refused (at most ${MAX_DROPPED_BYTES})` };
    const buf = Buffer.alloc(MAX_DROPPED_BYTES + 1);
    let got = 0;
    for (let n = 1; n > 0 && got < buf.length; got += n) n = readSync(fd, buf, got, buf.length - got, null);
    if (got > MAX_DROPPED_BYTES) return { refused: `grew past ${MAX_DROPPED_BYTES} bytes while read: refused` };
    return { text: buf.subarray(0, got).toString('utf8') };
  } finally {
    closeSync(fd);
  }
}

/**
 * Overwrites a dropped file that held the secret with zeros (and syncs) before unlinking it, so the
 * key is not left readable in the FAT image's free clusters. Best effort: FAT writes in place, but
 * an SD card's flash translation layer may keep the old blocks, and a journaling or copy-on-write
 * file system would write elsewhere.
 */
function scrubAndRemove(file: string): void {
  try {
    const fd = openSync(file, constants.O_WRONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    try {
      const st = fstatSync(fd);
      if (st.isFile()) {
        const zeros = Buffer.alloc(Math.min(st.size, MAX_DROPPED_BYTES));
        let off = 0;
        while (off < zeros.length) off += writeSync(fd, zeros, off, zeros.length - off, off);
        fsyncSync(fd);
      }
    } finally {
      closeSync(fd);
    }
  } catch {
    // a link, or a read-only partition: the unlink below is all there is
  }
  rmSync(file, { force: true });
}

/** Whether `file` exists as a directory entry (a dangling link counts: it is to be refused, not skipped). */
function present(file: string): boolean {
  try {
    lstatSync(file);
    return true;
  } catch {
    return false;
  }
}

/** The group's id from an /etc/group-format file; undefined when it is not there. */
export function lookupGroupId(name: string, groupFile = '/etc/group'): number | undefined {
  let text: string;
  try {
    text = readFileSync(groupFile, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const [n, , gid] = line.split(':');
    if (n === name && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  return undefined;
}

/** Written aside and renamed (a power cut leaves the old file or the new one), owned by uid:gid when we are root. */
function installFile(file: string, text: string, mode: number, uid: number, gid: number): void {
  writeFileAtomicSync(file, text, mode, process.getuid?.() === 0 ? { owner: { uid, gid } } : {});
}

function problem(file: string, message: string): FileProblem {
  return { file, line: 1, col: 1, message };
}

/**
 * Installs what was dropped on the boot partition. Throws ConfigError (exit 78) listing every
 * problem when it is invalid, after writing them to devstreams-error.txt in the boot directory.
 */
export function provisionFromBoot(opts: ProvisionOptions): ProvisionResult {
  const bootDir = opts.bootDirs.find((d) => present(join(d, BOOT_CONFIG_NAME)) || present(join(d, BOOT_CONNECTION_STRING_NAME)));
  if (!bootDir) return { installed: [], removed: [] };
  const yamlPath = join(bootDir, BOOT_CONFIG_NAME);
  const csPath = join(bootDir, BOOT_CONNECTION_STRING_NAME);
  const configPath = join(opts.configDir, CONFIG_FILE_NAME);
  const secretPath = join(opts.configDir, CONNECTION_STRING_FILE_NAME);
  const problems: FileProblem[] = [];

  // The connection string: the .txt, else inline in the dropped yaml, else the one already installed.
  const take = (file: string): string | undefined => {
    const d = readDropped(file);
    if (d && 'refused' in d) problems.push(problem(file, `${file} ${d.refused}`));
    return d && 'text' in d ? d.text : undefined;
  };
  const droppedCs = take(csPath)?.trim();
  if (droppedCs !== undefined) {
    try {
      parseDeviceConnectionString(droppedCs);
    } catch (err) {
      problems.push(problem(csPath, `not a device connection string: ${(err as Error).message}`));
    }
  }
  const droppedYaml = take(yamlPath);
  let configText: string | undefined;
  let inlineCs: string | undefined;
  if (droppedYaml !== undefined) {
    const doc = parseDocument(droppedYaml);
    const hub = doc.get('hub', true);
    // A document with errors cannot be rewritten; parseAgentConfig below reports them.
    if (doc.errors.length === 0 && isMap(hub) && typeof hub.get('connection_string') === 'string') {
      inlineCs = String(hub.get('connection_string'));
      // Keep the secret out of the group-readable config: the agent reads systemd's credential.
      hub.delete('connection_string');
      if (!hub.has('connection_string_file')) hub.set('connection_string_file', CREDENTIAL_PATH);
    }
    configText = inlineCs === undefined ? droppedYaml : doc.toString();
  }
  const installed = readDropped(secretPath);
  const installedCs = installed && 'text' in installed ? installed.text.trim() : undefined;
  const cs = droppedCs ?? inlineCs ?? installedCs;
  if (droppedYaml !== undefined) {
    // Validate what the person wrote (their line numbers), with the connection string it will run with.
    const env: NodeJS.ProcessEnv = cs !== undefined && inlineCs === undefined ? { [CONNECTION_STRING_ENV]: cs } : {};
    const { problems: yamlProblems } = parseAgentConfig(droppedYaml, yamlPath, env);
    problems.push(...yamlProblems);
    if (cs === undefined && !yamlProblems.length) {
      problems.push(problem(yamlPath, `no device connection string: put hub.connection_string in it, or drop ${BOOT_CONNECTION_STRING_NAME} next to it`));
    }
  }

  const errorPath = join(bootDir, BOOT_ERROR_NAME);
  if (problems.length) {
    const text = `devstreams could not install the files on this partition; nothing was changed.\n\n${problems.map(formatFileProblem).join('\n')}\n`;
    try {
      // Replaces a link at that name instead of writing through it.
      writeFileAtomicSync(errorPath, text, 0o644);
    } catch {
      // a read-only boot partition: the journal still has the problems
    }
    throw new ConfigError(problems);
  }

  const gid = lookupGroupId(opts.group ?? 'devstreams', opts.groupFile) ?? (existsSync(configPath) ? statSync(configPath).gid : 0);
  const done: string[] = [];
  const secret = droppedCs ?? inlineCs;
  if (secret !== undefined) {
    installFile(secretPath, `${secret}\n`, SECRET_MODE, 0, 0);
    done.push(secretPath);
  }
  if (configText !== undefined) {
    installFile(configPath, configText, CONFIG_MODE, 0, gid);
    done.push(configPath);
  }
  const removed: string[] = [];
  for (const f of [yamlPath, csPath]) {
    if (!present(f)) continue;
    // The .txt is the secret; the yaml held it when it was inline.
    if (f === csPath || inlineCs !== undefined) scrubAndRemove(f);
    else rmSync(f, { force: true });
    removed.push(f);
  }
  rmSync(errorPath, { force: true });
  syncDirectory(bootDir);
  return { bootDir, installed: done, removed };
}
