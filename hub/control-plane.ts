import type { EventEmitter } from 'node:events';
import type { StreamRequest } from '../wire';
import type { BrokerEvents } from './broker';

/**
 * The hub's control plane: how stream requests reach devices and their answers come back. The
 * embedded broker (hub/broker.ts, devices connect to the hub) and an external broker (hub/external-
 * broker.ts, devices connect to mosquitto or a cluster) both satisfy it; the service API and the
 * device health view see only this.
 */
export interface ControlPlane extends EventEmitter<BrokerEvents> {
  start(): Promise<void>;
  /** Never throws. */
  stop(): Promise<void>;
  isOnline(deviceId: string): boolean;
  /** False when the request cannot be sent (device offline, or this hub not connected). */
  sendStreamRequest(deviceId: string, req: StreamRequest): boolean;
  /**
   * External brokers only: the broker is the device registry (its password file, ACL, CA), so a
   * device the hub's own registry lacks is still known once it announced itself on the broker.
   */
  knows?(deviceId: string): boolean;
}
