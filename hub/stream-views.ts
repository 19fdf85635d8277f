/**
 * Streams as the hub's console shows them (hub/streaming-endpoint.ts fills them in). No imports: the
 * console's browser code reads the same types.
 */
/** One joined stream as the console's streams view shows it. */
export interface OpenStreamView {
  streamId: string;
  deviceId: string;
  service: string | null;
  operator: string | null;
  since: string;
  deviceToService: number;
  serviceToDevice: number;
}
