import { describe, expect, it } from 'vitest';
import {
  DEFAULT_DEVICE_TOPIC_ROOT,
  deviceStatusTopic,
  deviceTelemetryTopic,
  deviceTopicRoot,
  fleetSubscriptions,
  formatFleetStreamRequestTopic,
  formatStreamResponseTopic,
  isDevstreamsError,
  parseFleetTopic,
  parseStreamRequestTopic,
  parseStreamResponseTopic,
  topicRootTemplateProblem,
} from '../wire';

describe('fleet topics (a plain broker, a root per device)', () => {
  const root = deviceTopicRoot(DEFAULT_DEVICE_TOPIC_ROOT, 'pi-0042');

  it('puts the IoT Hub layout under the device root', () => {
    expect(root).toBe('devstreams/pi-0042');
    expect(deviceStatusTopic(root)).toBe('devstreams/pi-0042/status');
    expect(deviceTelemetryTopic(root)).toBe('devstreams/pi-0042/messages/events/');
    expect(fleetSubscriptions('fleet/eu/{device_id}/ds')).toEqual({
      responses: 'fleet/eu/+/ds/streams/res/#',
      status: 'fleet/eu/+/ds/status',
      telemetry: 'fleet/eu/+/ds/messages/events/#',
    });
  });

  it('writes a request with no "." in its property bag, and the device reads back the same URL and token', () => {
    const req = { streamName: 'ssh', requestId: 'a1b2-17', url: 'wss://hub-2.example.net:443/bridges/0123abcd', authToken: 'dst1.eyJzIjoiYSJ9.c2ln-_x' };
    const topic = formatFleetStreamRequestTopic(req, root);
    expect(topic.split('/').pop()).not.toContain('.');
    expect(parseStreamRequestTopic(topic, root)).toEqual(req);
  });

  it('tells which device and what a topic is, and ignores others', () => {
    expect(parseFleetTopic(DEFAULT_DEVICE_TOPIC_ROOT, 'devstreams/pi-0042/status')).toEqual({ kind: 'status', deviceId: 'pi-0042', root });
    const res = formatStreamResponseTopic(200, 'a1-3', root);
    expect(parseFleetTopic(DEFAULT_DEVICE_TOPIC_ROOT, res)).toEqual({ kind: 'response', deviceId: 'pi-0042', root });
    expect(parseStreamResponseTopic(res, root)).toEqual({ status: 200, requestId: 'a1-3' });
    expect(parseFleetTopic(DEFAULT_DEVICE_TOPIC_ROOT, deviceTelemetryTopic(root))?.kind).toBe('telemetry');
    for (const t of ['devstreams/pi-0042', 'other/pi-0042/status', 'devstreams/pi-0042/status/x', 'devstreams//status', 'devstreams/pi-0042/streams/POST/x/?$rid=1']) {
      expect(parseFleetTopic(DEFAULT_DEVICE_TOPIC_ROOT, t)).toBeUndefined();
    }
  });

  it('refuses templates and device ids a broker could not confine', () => {
    expect(topicRootTemplateProblem('devstreams/{device_id}')).toBeUndefined();
    for (const bad of ['devstreams', 'devstreams/{device_id}/{device_id}', 'devstreams/x{device_id}', 'devstreams/+/{device_id}', '/devstreams/{device_id}', '$share/{device_id}', 'a//{device_id}']) {
      expect(topicRootTemplateProblem(bad), bad).toBeDefined();
    }
    for (const id of ['a/b', '+', '#', '']) {
      let err: unknown;
      try {
        deviceTopicRoot(DEFAULT_DEVICE_TOPIC_ROOT, id);
      } catch (e) {
        err = e;
      }
      expect(isDevstreamsError(err, 'EUSAGE'), id).toBe(true);
    }
  });
});
