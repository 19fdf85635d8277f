import { Duplex, Transform, type TransformCallback } from 'node:stream';
import { DevstreamsError } from '../wire';
import { MQTT_PACKET_MAX_BYTES, MQTT_PREAUTH_MAX_BYTES, MQTT_WS_PREAUTH_MAX_BYTES } from './limits';

/**
 * Reads the MQTT fixed header (type byte, remaining length) of every packet a client sends before
 * aedes sees a byte, and cuts the connection when a packet announces more than the client may send:
 * before authentication, `MQTT_PREAUTH_MAX_BYTES` in total (a CONNECT announcing 256 MiB is refused at
 * its length field, nothing of it buffered); after, `MQTT_PACKET_MAX_BYTES` per packet. aedes's parser
 * (mqtt-packet) has no size limit of its own. Retained publishes are refused here too, at the header
 * byte, the way mosquitto does with `retain_available false`.
 */
export class MqttGuard extends Transform {
  private authenticated = false;
  /** Bytes seen before authentication. */
  private preAuthBytes = 0;
  /** Bytes of the current packet's body still to pass through. */
  private bodyLeft = 0;
  /** Fixed header being read: the type byte, then the length bytes. */
  private header: number[] = [];

  constructor(private readonly onRefused: (code: MqttGuardCode, detail: string) => void) {
    super();
  }

  private unwatch?: () => void;

  /** The client authenticated: the per-packet limit applies from now on. */
  markAuthenticated(): void {
    this.authenticated = true;
    this.unwatch?.();
  }

  /**
   * MQTT over WebSocket: ws buffers a whole message (up to its maxPayload) before the guard sees a
   * byte of it, so before authentication the bytes under the WebSocket are counted too.
   */
  watchUnderlying(socket: Duplex): void {
    let bytes = 0;
    const onData = (chunk: Buffer): void => {
      bytes += chunk.length;
      if (bytes <= MQTT_WS_PREAUTH_MAX_BYTES) return;
      socket.off('data', onData);
      this.onRefused('EMQTT_TOO_LARGE', `more than ${MQTT_WS_PREAUTH_MAX_BYTES} WebSocket bytes before authentication`);
      socket.destroy();
    };
    socket.on('data', onData);
    this.unwatch = () => socket.off('data', onData);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    if (!this.authenticated) {
      this.preAuthBytes += chunk.length;
      if (this.preAuthBytes > MQTT_PREAUTH_MAX_BYTES) return this.refuse(done, 'EMQTT_TOO_LARGE', `more than ${MQTT_PREAUTH_MAX_BYTES} bytes before authentication`);
    }
    let i = 0;
    while (i < chunk.length) {
      if (this.bodyLeft > 0) {
        const n = Math.min(this.bodyLeft, chunk.length - i);
        this.bodyLeft -= n;
        i += n;
        continue;
      }
      this.header.push(chunk[i++]!);
      const verdict = this.readHeader();
      if (verdict) return this.refuse(done, verdict.code, verdict.detail);
    }
    done(null, chunk);
  }

  /** Advances over one header byte; returns a refusal when the header says too much or is malformed. */
  private readHeader(): { code: MqttGuardCode; detail: string } | undefined {
    const h = this.header;
    if (h.length === 1) {
      const isPublish = h[0]! >> 4 === 3;
      if (isPublish && (h[0]! & 0x01) === 1) return { code: 'EMQTT_RETAIN', detail: 'retained publish (this hub keeps nothing for devices)' };
      return undefined;
    }
    const lengthBytes = h.length - 1;
    const last = h[h.length - 1]!;
    if (last & 0x80) {
      // The remaining length has at most four bytes [MQTT-2.2.3].
      return lengthBytes >= 4 ? { code: 'EMQTT_MALFORMED', detail: 'remaining length longer than 4 bytes' } : undefined;
    }
    let length = 0;
    for (let k = lengthBytes; k >= 1; k--) length = length * 128 + (h[k]! & 0x7f);
    this.header = [];
    const limit = this.authenticated ? MQTT_PACKET_MAX_BYTES : MQTT_PREAUTH_MAX_BYTES;
    if (length > limit) {
      return { code: 'EMQTT_TOO_LARGE', detail: `packet announces ${length} bytes, limit ${limit}${this.authenticated ? '' : ' before authentication'}` };
    }
    this.bodyLeft = length;
    return undefined;
  }

  private refuse(done: TransformCallback, code: MqttGuardCode, detail: string): void {
    this.onRefused(code, detail);
    done(new DevstreamsError('EPROTOCOL', detail));
  }
}

export type MqttGuardCode = 'EMQTT_TOO_LARGE' | 'EMQTT_RETAIN' | 'EMQTT_MALFORMED';

/**
 * `transport` (a TLS socket or a WebSocket stream) as aedes should see it: reads through a guard,
 * writes straight through; destroying either end destroys both.
 */
export function guardedConnection(transport: Duplex, onRefused: (code: MqttGuardCode, detail: string) => void): { conn: Duplex; guard: MqttGuard } {
  const guard = new MqttGuard(onRefused);
  transport.pipe(guard);
  const conn = Duplex.from({ readable: guard, writable: transport });
  const destroyAll = (): void => {
    transport.destroy();
    guard.destroy();
    conn.destroy();
  };
  guard.on('error', destroyAll);
  transport.on('error', destroyAll);
  transport.on('close', destroyAll);
  conn.on('close', () => transport.destroy());
  return { conn, guard };
}
