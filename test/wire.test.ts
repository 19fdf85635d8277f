import { describe, expect, it } from 'vitest';
import {
  createSasToken,
  formatFleetStreamRequestTopic,
  formatStreamRequestTopic,
  formatStreamResponseTopic,
  isDevstreamsError,
  parseDeviceConnectionString,
  parseSasToken,
  parseServiceConnectionString,
  parseStreamRequestPath,
  parseStreamRequestTopic,
  parseStreamResponseTopic,
  sasSignature,
  splitHostName,
  streamRequestPath,
  verifySasToken,
} from '../wire';

const KEY = Buffer.from('0123456789abcdef0123456789abcdef').toString('base64');

describe('stream request topics', () => {
  it('parses the C SDK fixture, with $ip and an encoded URL', () => {
    const r = parseStreamRequestTopic(
      '$iothub/streams/POST/TestStream/?$rid=1&$url=wss%3A%2F%2Fservername.streaming.private.azure-devices-int.net%3A443%2Fbridges%2F3acd50143144f6b82e0f7299afe911bd&$auth=ucHqFGN0o9Vh-ojlhELmXyTUol05iuAhigMckeI-vlb&$ip=111.222.333.444',
    );
    expect(r).toEqual({
      streamName: 'TestStream',
      requestId: '1',
      url: 'wss://servername.streaming.private.azure-devices-int.net:443/bridges/3acd50143144f6b82e0f7299afe911bd',
      authToken: 'ucHqFGN0o9Vh-ojlhELmXyTUol05iuAhigMckeI-vlb',
    });
  });

  it('parses the C# fixture without the leading "?"', () => {
    const r = parseStreamRequestTopic('$iothub/streams/POST/{name}/$rid={rid}&$url=wss%3A%2F%2Fh%2Fb&$auth={jwt}');
    expect(r).toEqual({ streamName: '{name}', requestId: '{rid}', url: 'wss://h/b', authToken: '{jwt}' });
  });

  it('matches the prefix case-insensitively and keeps $auth raw (values may hold "=")', () => {
    const r = parseStreamRequestTopic('$IOTHUB/Streams/post/ssh/?$rid=7&$url=wss%3A%2F%2Fh&$auth=a.b=c');
    expect(r.streamName).toBe('ssh');
    expect(r.authToken).toBe('a.b=c');
  });

  it('round-trips what the hub formats', () => {
    const req = { streamName: 'web', requestId: '42', url: 'wss://hub.example:8443/bridges/abc?x=1&y=2', authToken: 'dst1.e30.sig' };
    expect(parseStreamRequestTopic(formatStreamRequestTopic(req))).toEqual(req);
  });

  it('carries the operator as $op (ours; the SDK fixtures above parse the same with it unknown to them)', () => {
    const req = { streamName: 'ssh', requestId: '3', url: 'wss://hub.example:8443/bridges/abc', authToken: 'dst1.e30.sig', operator: 'alice.smith@ops' };
    const topic = formatStreamRequestTopic(req);
    expect(topic).toBe('$iothub/streams/POST/ssh/?$rid=3&$url=wss%3A%2F%2Fhub.example%3A8443%2Fbridges%2Fabc&$auth=dst1.e30.sig&$op=alice.smith%40ops');
    expect(parseStreamRequestTopic(topic)).toEqual(req);
    // Fleet brokers (NATS) carry no dots in the bag: the operator's are %2E like the URL's.
    expect(formatFleetStreamRequestTopic(req, 'devices/pi/$iothub')).toMatch(/&\$op=alice%2Esmith%40ops$/);
    expect(parseStreamRequestTopic(formatFleetStreamRequestTopic(req, 'devices/pi/$iothub'), 'devices/pi/$iothub').operator).toBe('alice.smith@ops');
    // An $op that is not an operator name is dropped, never fails the request, never reaches a log raw.
    for (const bad of ['%1B%5B2J', '%E0%A4%A', '', 'a%0Ab', 'x'.repeat(65)]) {
      const r = parseStreamRequestTopic(`$iothub/streams/POST/ssh/?$rid=1&$url=wss%3A%2F%2Fh&$auth=t&$op=${bad}`);
      expect(r.operator, bad).toBeUndefined();
    }
  });

  it.each([
    ['wrong prefix', '$iothub/methods/POST/x/?$rid=1'],
    ['too few levels', '$iothub/streams/POST/?$rid=1&$url=a&$auth=b'],
    ['too many levels', '$iothub/streams/POST/a/b/?$rid=1&$url=a&$auth=b'],
    ['empty stream name', '$iothub/streams/POST//?$rid=1&$url=a&$auth=b'],
    ['no $rid', '$iothub/streams/POST/s/?$url=a&$auth=b'],
    ['no $url', '$iothub/streams/POST/s/?$rid=1&$auth=b'],
    ['no $auth', '$iothub/streams/POST/s/?$rid=1&$url=a'],
    ['bad percent-encoding', '$iothub/streams/POST/s/?$rid=1&$url=%E0%A4%A&$auth=b'],
    ['empty', ''],
  ])('rejects a malformed topic: %s', (_why, topic) => {
    let err: unknown;
    try {
      parseStreamRequestTopic(topic);
    } catch (e) {
      err = e;
    }
    expect(isDevstreamsError(err, 'EMALFORMED_TOPIC')).toBe(true);
  });

  it('formats and parses responses', () => {
    expect(formatStreamResponseTopic(200, '9')).toBe('$iothub/streams/res/200/?$rid=9');
    expect(parseStreamResponseTopic('$iothub/streams/res/400/?$rid=9')).toEqual({ status: 400, requestId: '9' });
    expect(() => parseStreamResponseTopic('$iothub/streams/res/abc/?$rid=9')).toThrow(/status/);
  });
});

describe('SAS tokens', () => {
  const now = 1_700_000_000;

  it('signs as IoT Hub does: HMAC-SHA256 over sr + "\\n" + se with the decoded key', () => {
    const token = createSasToken({ resource: 'hub.example/devices/pi-001', key: KEY, expiresAt: now + 3600 });
    const sig = sasSignature(KEY, encodeURIComponent('hub.example/devices/pi-001'), now + 3600);
    expect(token).toBe(`SharedAccessSignature sr=hub.example%2Fdevices%2Fpi-001&sig=${encodeURIComponent(sig)}&se=${now + 3600}`);
  });

  it('verifies both the encoded sr (C#, Node) and the raw sr (C SDK)', () => {
    for (const encodeResource of [true, false]) {
      const t = parseSasToken(createSasToken({ resource: 'hub.example/devices/pi-001', key: KEY, expiresAt: now + 60, encodeResource }));
      expect(t.resource).toBe('hub.example/devices/pi-001');
      expect(() => verifySasToken(t, KEY, now)).not.toThrow();
    }
  });

  it('rejects an expired token, a wrong key and a tampered scope, each with its own code', () => {
    const t = parseSasToken(createSasToken({ resource: 'h/devices/a', key: KEY, expiresAt: now + 60 }));
    expect(() => verifySasToken(t, KEY, now + 61)).toThrow(expect.objectContaining({ code: 'ETOKEN_EXPIRED' }));
    expect(() => verifySasToken(t, Buffer.from('another key').toString('base64'), now)).toThrow(expect.objectContaining({ code: 'EBAD_SIGNATURE' }));
    const tampered = { ...t, srRaw: encodeURIComponent('h/devices/b') };
    expect(() => verifySasToken(tampered, KEY, now)).toThrow(expect.objectContaining({ code: 'EBAD_SIGNATURE' }));
  });

  it('carries the policy name for service tokens', () => {
    const t = parseSasToken(createSasToken({ resource: 'hub.example', key: KEY, keyName: 'service', expiresAt: now + 60 }));
    expect(t.keyName).toBe('service');
  });

  it.each(['', 'Bearer x', 'SharedAccessSignature sr=a&se=1', 'SharedAccessSignature sr=a&sig=b&se=soon', 'SharedAccessSignature garbage'])(
    'rejects a malformed token: %j',
    (token) => {
      expect(() => parseSasToken(token)).toThrow(expect.objectContaining({ code: 'EMALFORMED_TOKEN' }));
    },
  );
});

describe('connection strings', () => {
  it('parses a device string, splitting each part on its first "=" only', () => {
    const c = parseDeviceConnectionString(`HostName=hub.example:8443;DeviceId=pi-001;SharedAccessKey=${KEY}`);
    expect(c).toEqual({ hostName: 'hub.example:8443', deviceId: 'pi-001', sharedAccessKey: KEY, x509: false });
    expect(KEY.endsWith('=')).toBe(true);
  });

  it('parses a service string', () => {
    const c = parseServiceConnectionString(`HostName=h;SharedAccessKeyName=service;SharedAccessKey=${KEY}`);
    expect(c.sharedAccessKeyName).toBe('service');
  });

  it.each([
    ['no HostName', `DeviceId=a;SharedAccessKey=${KEY}`],
    ['no key', 'HostName=h;DeviceId=a'],
    ['not base64', 'HostName=h;DeviceId=a;SharedAccessKey=not base64!'],
    ['not key=value', 'HostName=h;DeviceId'],
  ])('rejects a device string with %s, without echoing the key', (_why, text) => {
    let err: unknown;
    try {
      parseDeviceConnectionString(text);
    } catch (e) {
      err = e;
    }
    expect(isDevstreamsError(err, 'EMALFORMED_CONNECTION_STRING')).toBe(true);
    expect((err as Error).message).not.toContain(KEY);
  });

  it('splits a HostName with or without a port', () => {
    expect(splitHostName('hub.example')).toEqual({ host: 'hub.example', port: 443 });
    expect(splitHostName('127.0.0.1:8443')).toEqual({ host: '127.0.0.1', port: 8443 });
    expect(splitHostName('[::1]:9')).toEqual({ host: '::1', port: 9 });
    expect(() => splitHostName('h:99999')).toThrow(/port/);
  });
});

describe('service REST paths', () => {
  it('builds and parses the stream request path, device and module variants', () => {
    expect(streamRequestPath('pi 1', 'ssh')).toBe('/twins/pi%201/streams/ssh?api-version=2020-09-30');
    expect(parseStreamRequestPath('/twins/pi%201/streams/ssh')).toEqual({ deviceId: 'pi 1', streamName: 'ssh' });
    expect(parseStreamRequestPath('/twins/d/modules/m/streams/s')).toEqual({ deviceId: 'd', moduleId: 'm', streamName: 's' });
    expect(parseStreamRequestPath('/twins/d/methods')).toBeNull();
    expect(parseStreamRequestPath('/twins/%E0%A4%A/streams/s')).toBeNull();
  });
});
