import type { DeviceView } from '../../hub/devices';
import { terminalSafe } from '../../core/terminal-text';
import { serviceClient, type ServiceCliOptions } from './service-client';

const pct = (v: unknown): string => (typeof v === 'number' ? `${Math.round(v)}%` : '-');

function ago(iso: string | null, now = Date.now()): string {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  return s < 120 ? `${s}s ago` : s < 7200 ? `${Math.round(s / 60)}m ago` : s < 172_800 ? `${Math.round(s / 3600)}h ago` : `${Math.round(s / 86_400)}d ago`;
}

export function formatDevices(devices: DeviceView[]): string {
  const rows = [['DEVICE', 'ONLINE', 'LAST SEEN', 'CPU', 'TEMP', 'MEM', 'DISK /', 'STREAMS', 'VERSION']];
  for (const d of devices) {
    const h = (d.health ?? {}) as {
      cpu?: { load_pct?: number; temp_c?: number | null };
      memory?: { used_pct?: number } | null;
      disks?: Array<{ mount: string; used_pct: number }> | null;
      agent?: { active_streams?: number };
      version?: string;
    };
    const root = h.disks?.find((x) => x.mount === '/') ?? h.disks?.[0];
    rows.push([
      d.deviceId,
      // A disabled device is refused at connect: that, not "no", is what the operator needs to see.
      d.status === 'disabled' ? 'disabled' : d.connectionState === 'Connected' ? 'yes' : 'no',
      ago(d.lastActivityTime),
      pct(h.cpu?.load_pct),
      typeof h.cpu?.temp_c === 'number' ? `${h.cpu.temp_c}C` : '-',
      pct(h.memory?.used_pct),
      pct(root?.used_pct),
      // The hub's own count is live; the device's last report may be minutes old.
      String(typeof d.activeStreams === 'number' ? d.activeStreams : (h.agent?.active_streams ?? '-')),
      typeof h.version === 'string' ? h.version : '-',
    ]);
  }
  // Device ids (from a broker) and every health field come from devices: nothing reaches the terminal raw.
  for (const r of rows) for (let i = 0; i < r.length; i++) r[i] = terminalSafe(r[i]!, 100);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return `${rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n')}\n`;
}

/** `devstreams devices`: the hub's device list. */
export async function listDevices(opts: ServiceCliOptions & { json?: boolean }): Promise<void> {
  const client = serviceClient(opts);
  try {
    const devices = await client.listDevices();
    process.stdout.write(opts.json ? `${JSON.stringify(devices, null, 2)}\n` : formatDevices(devices));
  } finally {
    client.close();
  }
}
