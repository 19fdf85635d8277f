import type { Logger } from '../core/log';
import type { ControlPlane } from './control-plane';
import type { DeviceRegistry } from './device-registry';

/**
 * What the hub knows about each device's health: online or not (the broker sees the MQTT session
 * come and go; a connection that dies without DISCONNECT, the Last Will case, ends when keepalive
 * expires), when it was last seen, and its last health telemetry. Kept in memory: after a hub
 * restart devices show as offline until they reconnect, and health reappears with their next
 * message (agents send one right after connecting).
 */
export const MAX_HEALTH_BYTES = 16 * 1024;

export interface DeviceView {
  /** IoT Hub's device identity names, so a client of IoT Hub's registry API can read these too. */
  deviceId: string;
  connectionState: 'Connected' | 'Disconnected';
  /** IoT Hub's `status`: a disabled device is refused at connect and gets no streams. */
  status: 'enabled' | 'disabled';
  lastActivityTime: string | null;
  /** Ours: when the device's current (or last) connection began. */
  connectedSince: string | null;
  /** Ours: streams of this device open through this hub now. */
  activeStreams: number;
  /** Ours: the last health telemetry (devstreams.health/1), or null before the first. */
  health: Record<string, unknown> | null;
  healthTime: string | null;
}

interface Entry {
  online: boolean;
  since?: Date;
  lastSeen?: Date;
  health?: Record<string, unknown>;
  healthAt?: Date;
}

export class DeviceHealth {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly registry: DeviceRegistry,
    broker: ControlPlane,
    private readonly log: Logger,
    private readonly activeStreams: (deviceId: string) => number = () => 0,
  ) {
    broker.on('online', (id) => {
      const e = this.entry(id);
      e.online = true;
      e.lastSeen = new Date();
      e.since = e.lastSeen;
    });
    broker.on('offline', (id) => {
      const e = this.entry(id);
      e.online = false;
      e.lastSeen = new Date();
    });
    broker.on('telemetry', (id, payload) => this.onTelemetry(id, payload));
    // A removed device leaves the list with its health (it can only come back by being added again).
    registry.on('change', ({ deviceId, change }) => {
      if (change === 'removed') this.entries.delete(deviceId);
    });
  }

  private entry(id: string): Entry {
    let e = this.entries.get(id);
    if (!e) {
      e = { online: false };
      this.entries.set(id, e);
    }
    return e;
  }

  private onTelemetry(id: string, payload: Buffer): void {
    const e = this.entry(id);
    e.lastSeen = new Date();
    if (payload.length > MAX_HEALTH_BYTES) {
      this.log.warn({ device: id, bytes: payload.length }, 'health telemetry too large: ignored');
      return;
    }
    try {
      const body = JSON.parse(payload.toString('utf8')) as unknown;
      if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new Error('not a JSON object');
      e.health = body as Record<string, unknown>;
      e.healthAt = new Date();
    } catch (err) {
      this.log.debug({ device: id, err: (err as Error).message }, 'telemetry is not health JSON: ignored');
    }
  }

  /** Every registered device (and any that spoke without being registered, which cannot happen today). */
  list(): DeviceView[] {
    const ids = new Set([...this.registry.list(), ...this.entries.keys()]);
    return [...ids].sort().map((id) => {
      const e = this.entries.get(id);
      return {
        deviceId: id,
        connectionState: e?.online ? 'Connected' : 'Disconnected',
        status: this.registry.get(id)?.status === 'disabled' ? 'disabled' : 'enabled',
        lastActivityTime: e?.lastSeen?.toISOString() ?? null,
        connectedSince: e?.since?.toISOString() ?? null,
        activeStreams: this.activeStreams(id),
        health: e?.health ?? null,
        healthTime: e?.healthAt?.toISOString() ?? null,
      };
    });
  }
}
