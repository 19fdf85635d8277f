// The one place that knows IoT Hub's device-streams wire format. Nothing else builds a topic,
// token or connection string by hand.
export * from './errors';
export * from './connection-string';
export * from './sas';
export * from './topics';
export * from './service-api';
export * from './streaming';
export * from './control';
export * from './fleet-topics';
export * from './service-name';
