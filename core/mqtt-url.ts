import type { IClientOptions } from 'mqtt';

/**
 * An MQTT broker URL (mqtt, mqtts, ws, wss) as mqtt.js's connect options, read with the WHATWG URL
 * parser. Given the URL as a string, mqtt.js reads it with Node's url.parse(), which Node 24 (the
 * single executables) deprecates at run time (DEP0169): every agent and fleet hub start printed the
 * warning. Only what mqtt.js took from the string: protocol, host, port and (for WebSockets) the path.
 */
export function mqttUrlOptions(url: string): Pick<IClientOptions, 'protocol' | 'host' | 'hostname' | 'port' | 'path'> {
  const u = new URL(url);
  // url.parse() gave an IPv6 literal without its brackets, which is what net.connect wants.
  const hostname = u.hostname.replace(/^\[|\]$/g, '');
  return {
    protocol: u.protocol.replace(/:$/, '') as IClientOptions['protocol'],
    host: hostname,
    hostname,
    ...(u.port ? { port: Number(u.port) } : {}),
    path: `${u.pathname}${u.search}`,
  };
}
