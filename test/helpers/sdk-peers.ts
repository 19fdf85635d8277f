import { createHmac } from 'node:crypto';
import { request as httpsRequest } from 'node:https';
import { connect as netConnect, type Socket } from 'node:net';
import { connectAsync, type MqttClient } from 'mqtt';
import { WebSocket, type RawData } from 'ws';

// IoT Hub SDK-shaped peers, written from ../shared/docs/device-streams-wire.md (§1-6, §9) and not
// from our own wire/ code, so they catch where we drift from what the SDKs do.

const API_VERSION = '2020-09-30';
const C_SDK_CLIENT_TYPE = 'iothubclient%2f1.9.0%20(native%3b%20Linux%3b%20x86_64)';

/** A SAS token as the C SDK makes it: `sr` not URL-encoded, the signature is. */
function cSdkSasToken(resource: string, keyBase64: string, keyName?: string): string {
  const se = Math.floor(Date.now() / 1000) + 3600;
  const sig = createHmac('sha256', Buffer.from(keyBase64, 'base64')).update(`${resource}\n${se}`).digest('base64');
  return `SharedAccessSignature sr=${resource}&sig=${encodeURIComponent(sig)}&se=${se}${keyName ? `&skn=${keyName}` : ''}`;
}

function connectionStringFields(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const part of text.split(';')) {
    const i = part.indexOf('=');
    if (i > 0) m.set(part.slice(0, i), part.slice(i + 1));
  }
  return m;
}

export interface SdkStreamEvents {
  /** The streaming URL exactly as the request carried it. */
  url: string;
  /** Every frame received, as the bytes the sample writes into its target (text frames too). */
  framesToTarget: number;
  /** How the WebSocket ended (code 1006 when lost). */
  closed: Promise<number>;
  /** Set when the URL could not be dialed as given (the C SDK dials port 0 when none is named). */
  dialError?: string;
}

/**
 * A device like the C SDK's streaming proxy sample: MQTT/TLS with its username and SAS, both stream
 * subscriptions at QoS 0, empty-payload answers; on a request it accepts (or refuses), dials the URL
 * exactly as given, then opens its local TCP target and writes every frame it receives into it; when
 * the target ends it closes the WebSocket normally, and when the WebSocket closes it ends the target.
 */
export class SdkDevice {
  readonly streams: SdkStreamEvents[] = [];
  readonly requestTopics: string[] = [];
  /** What to answer: 200 and stream to `targetPort`, or 400 with an empty payload. */
  answer: { accept: true; targetPort: number } | { accept: false } = { accept: false };

  private constructor(
    private readonly client: MqttClient,
    private readonly caPem: Buffer,
  ) {}

  static async connect(o: { connectionString: string; mqttPort: number; caPem: Buffer }): Promise<SdkDevice> {
    // The hub's CA is this device's trusted root, as the SDK samples take it (`TrustedCerts`).
    const f = connectionStringFields(o.connectionString);
    const hostName = f.get('HostName')!;
    const deviceId = f.get('DeviceId')!;
    const client = await connectAsync(`mqtts://127.0.0.1:${o.mqttPort}`, {
      clientId: deviceId,
      username: `${hostName}/${deviceId}/?api-version=${API_VERSION}&DeviceClientType=${C_SDK_CLIENT_TYPE}`,
      password: cSdkSasToken(`${hostName}/devices/${deviceId}`, f.get('SharedAccessKey')!),
      protocolVersion: 4,
      clean: false,
      keepalive: 240,
      reconnectPeriod: 0,
      ca: o.caPem,
    });
    const device = new SdkDevice(client, o.caPem);
    client.on('message', (topic) => device.onMessage(topic));
    await client.subscribeAsync(['$iothub/streams/POST/#', '$iothub/streams/res/#'], { qos: 0 });
    return device;
  }

  private onMessage(topic: string): void {
    if (!/^\$iothub\/streams\/POST\//i.test(topic)) return;
    this.requestTopics.push(topic);
    const levels = topic.split('/');
    const bag = new Map<string, string>();
    for (const kv of levels[4]!.replace(/^\?/, '').split('&')) {
      const i = kv.indexOf('=');
      if (i > 0) bag.set(kv.slice(0, i), kv.slice(i + 1));
    }
    const rid = bag.get('$rid')!;
    const answer = this.answer;
    void this.client.publishAsync(`$iothub/streams/res/${answer.accept ? 200 : 400}/?$rid=${rid}`, '', { qos: 0 });
    if (answer.accept) this.stream(decodeURIComponent(bag.get('$url')!), bag.get('$auth')!, answer.targetPort);
  }

  private stream(url: string, auth: string, targetPort: number): void {
    const ev: SdkStreamEvents = { url, framesToTarget: 0, closed: Promise.resolve(0) };
    this.streams.push(ev);
    // Read the raw text: WHATWG URL drops a default port (`:443`), which the SDK does not.
    if (!/^wss:\/\/(\[[^\]]+\]|[^/:]+):\d+\//.test(url)) {
      ev.dialError = 'no port in the streaming URL (the C SDK dials port 0)';
      return;
    }
    // No subprotocol, no extension header: just the bearer token, as the SDK sends.
    const ws = new WebSocket(url, { headers: { Authorization: `Bearer ${auth}` }, ca: this.caPem, perMessageDeflate: false });
    ev.closed = new Promise((resolve) => ws.on('close', (code) => resolve(code)));
    ws.on('error', () => undefined);
    ws.on('open', () => {
      const target: Socket = netConnect({ host: '127.0.0.1', port: targetPort });
      target.on('error', () => ws.terminate());
      ws.on('message', (data: RawData) => {
        // The sample treats every frame, text or binary, as bytes for its target.
        ev.framesToTarget++;
        target.write(data as Buffer);
      });
      target.on('data', (c: Buffer) => ws.send(c, { binary: true }));
      target.on('end', () => ws.close(1000));
      ws.on('close', () => target.end());
    });
  }

  async close(): Promise<void> {
    await this.client.endAsync(true);
  }
}

/**
 * A service like IoT Hub's service SDKs: raw REST with a policy SAS, then the WebSocket with only a
 * bearer token (no extension header). Text frames it receives are recorded, never taken for data.
 */
export async function sdkServiceStream(o: {
  serviceConnectionString: string;
  hubAddress: { host: string; port: number };
  caPem: Buffer;
  deviceId: string;
  moduleId?: string;
  streamName: string;
}): Promise<{ accepted: false; headers: Record<string, unknown> } | { accepted: true; url: string; ws: WebSocket; frames: Array<{ text: boolean; data: Buffer }>; closed: Promise<number> }> {
  const f = connectionStringFields(o.serviceConnectionString);
  const hostName = f.get('HostName')!;
  const headers = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const req = httpsRequest(
      {
        host: o.hubAddress.host,
        port: o.hubAddress.port,
        method: 'POST',
        path: `/twins/${encodeURIComponent(o.deviceId)}${o.moduleId ? `/modules/${o.moduleId}` : ''}/streams/${o.streamName}?api-version=${API_VERSION}`,
        ca: o.caPem,
        headers: {
          authorization: cSdkSasToken(hostName, f.get('SharedAccessKey')!, f.get('SharedAccessKeyName')!),
          'iothub-streaming-connect-timeout-in-seconds': '60',
          'iothub-streaming-response-timeout-in-seconds': '60',
          'content-length': '0',
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => (res.statusCode === 200 ? resolve(res.headers) : reject(new Error(`HTTP ${res.statusCode} ${Buffer.concat(chunks).toString()}`))));
      },
    );
    req.on('error', reject);
    req.end();
  });
  if (String(headers['iothub-streaming-is-accepted']).toLowerCase() !== 'true') return { accepted: false, headers };
  const url = String(headers['iothub-streaming-url']);
  const ws = new WebSocket(url, { headers: { Authorization: `Bearer ${String(headers['iothub-streaming-auth-token'])}` }, ca: o.caPem, perMessageDeflate: false });
  const frames: Array<{ text: boolean; data: Buffer }> = [];
  ws.on('message', (data: RawData, isBinary: boolean) => frames.push({ text: !isBinary, data: data as Buffer }));
  const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return { accepted: true, url, ws, frames, closed };
}
