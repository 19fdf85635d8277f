/** sysexits.h: what a supervisor (systemd) and a script can tell apart. */
export const EXIT = {
  OK: 0,
  FAILURE: 1,
  USAGE: 64,
  UNAVAILABLE: 69,
  CONFIG: 78,
} as const;
