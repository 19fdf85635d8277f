import { Duplex, type Readable, type Writable } from 'node:stream';

const EOT = 0x04; // Ctrl-D: end of input for a terminal's line discipline
const LF = 0x0a;

export interface StdioStreamOptions {
  /**
   * Input waits for `release()` (a start message must reach the remote side before any byte); the
   * end of input is decided then.
   */
  held?: boolean;
  /**
   * What the end of input becomes: `end` passes it on (a half-close, for ssh's ProxyCommand and
   * commands), `eot` sends Ctrl-D (after a newline if the last line has none), so a remote shell in
   * a terminal reads to the end and exits with its own status, the way a person typing would end it.
   */
  inputEnd?: 'end' | 'eot';
  /**
   * When the remote side ends what it sends: `stop-input` stops reading too (a terminal session is
   * over), `end-output` ends our output and keeps sending input (TCP's half-close).
   */
  remoteEnd: 'stop-input' | 'end-output';
}

/**
 * A local process's stdin and stdout as one Duplex, the local side of a tunnel: what is read from
 * `input` goes to the remote side, what the remote side sends is written to `output`, with
 * backpressure both ways.
 */
export class StdioStream extends Duplex {
  private lastByte = LF;
  private held: boolean;
  private inputStopped = false;
  private wantsInput = false;
  private inputEnd: 'end' | 'eot';

  constructor(
    private readonly input: Readable,
    private readonly output: Writable,
    private readonly opts: StdioStreamOptions,
  ) {
    super({ allowHalfOpen: true });
    this.held = opts.held ?? false;
    this.inputEnd = opts.inputEnd ?? 'end';
    input.on('data', this.inputOnData);
    input.on('end', this.inputOnEnd);
    if (this.held) input.pause(); // a 'data' listener set it flowing
    input.on('error', (err) => this.destroy(err));
    output.on('error', (err) => this.destroy(err)); // EPIPE: whoever read our stdout went away
  }

  private readonly inputOnData = (chunk: Buffer | string): void => {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (buf.length) this.lastByte = buf[buf.length - 1]!;
    if (!this.push(buf)) this.input.pause();
  };

  private readonly inputOnEnd = (): void => {
    if (this.inputEnd === 'end') return void this.push(null);
    this.push(Buffer.from(this.lastByte === LF ? [EOT] : [LF, EOT]));
  };

  /** Lets input flow (after a start message); `inputEnd` as in the options. */
  release(inputEnd: 'end' | 'eot'): void {
    this.inputEnd = inputEnd;
    this.held = false;
    if (this.wantsInput && !this.inputStopped) this.input.resume();
  }

  override _read(): void {
    this.wantsInput = true;
    if (!this.held) this.input.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.output.write(chunk)) cb();
    else this.output.once('drain', () => cb());
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.opts.remoteEnd === 'end-output') {
      // process.stdout cannot be closed; everything written is flushed once its callback runs.
      if (this.output === process.stdout || this.output === process.stderr) this.output.write('', () => cb());
      else this.output.end(() => cb());
      return;
    }
    this.stopInput();
    this.push(null);
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.stopInput();
    cb(err);
  }

  private stopInput(): void {
    this.inputStopped = true;
    this.input.off('data', this.inputOnData);
    this.input.off('end', this.inputOnEnd);
    this.input.pause();
  }
}
