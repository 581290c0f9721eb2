/**
 * The server's own port against the kernel's ephemeral range (net.ipv4.ip_local_port_range,
 * which tune-sysctl widens). A port inside it can be taken by any outgoing connection, a proxy's
 * or the load tester's, while the server restarts, and the restart then fails with "cannot
 * listen". net.ipv4.ip_local_reserved_ports keeps a port out of the kernel's picks.
 */
import { readOrEmpty } from './boot-order.js';
import { sysctlPath } from './host.js';
import type { Values } from './sysctl.js';

export const RESERVED_PORTS = 'net.ipv4.ip_local_reserved_ports';

export interface ServerPortCheck {
  port: number;
  /** The ephemeral range in effect (after --apply, the one it writes). */
  range: Values;
  /** The reserved list as the kernel prints it ("8765,9000-9100"); '' for none. */
  reserved: string;
  /** In the range and not reserved. */
  exposed: boolean;
  /** The list --apply writes: the port added when exposed; null when nothing changes. */
  reserveTo: string | null;
}

/** null for port 0 (any free port) or an unreadable range; a missing reserved list reads as empty. */
export function checkServerPort(procRoot: string, port: number, range: Values | null): ServerPortCheck | null {
  if (port === 0 || range === null) return null;
  const reservedText = readOrEmpty(sysctlPath(procRoot, RESERVED_PORTS));
  const reserved = reservedText.trim();
  const exposed = port >= range[0]! && port <= range[1]! && !listHolds(reserved, port);
  return { port, range, reserved, exposed, reserveTo: exposed ? addPort(reserved, port) : null };
}

/** Whether a list such as "8765,9000-9100" holds `port`. */
export function listHolds(list: string, port: number): boolean {
  return list.split(',').some((part) => {
    const [low, high = low] = part.trim().split('-').map(Number);
    return low !== undefined && port >= low && port <= high!;
  });
}

/** `list` with `port` added (unless it holds it already). */
export function addPort(list: string, port: number): string {
  if (list.trim() === '') return String(port);
  return listHolds(list, port) ? list.trim() : `${list.trim()},${port}`;
}
