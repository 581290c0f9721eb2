/**
 * The address a connection's per-address limits count it under. Behind a reverse proxy every
 * client arrives from the proxy's address, so all of them would share one address's limits (a
 * reconnect storm of a thousand clients through nginx was refused with 429). For a peer listed
 * in websocket.server.trusted_proxies the client is the rightmost X-Forwarded-For entry that is
 * not itself a trusted proxy (the entries to its left are whatever the client chose to send).
 */
import { Buffer } from 'node:buffer';
import { isIP } from 'node:net';
import { headerList, type HttpRequest, type HttpResponse } from '../util/uws.js';

/**
 * `address` in one spelling: IPv4 dotted (IPv4-mapped IPv6 included), IPv6 compressed, without
 * a port (`1.2.3.4:5678` and `[::1]:5678`, as some proxies write them) or a zone (`fe80::1%eth0`);
 * anything else as given. Never throws: it runs on a header any client may write.
 */
export function normalizeAddress(address: string): string {
  let trimmed = address.trim();
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(trimmed);
  if (bracketed !== null) trimmed = bracketed[1]!;
  else if (/^\d{1,3}(\.\d{1,3}){3}:\d+$/.test(trimmed)) trimmed = trimmed.slice(0, trimmed.lastIndexOf(':'));
  const zone = trimmed.indexOf('%');
  if (zone >= 0) trimmed = trimmed.slice(0, zone);
  const kind = isIP(trimmed);
  if (kind === 4) return trimmed;
  if (kind !== 6) return address.trim();
  let canonical: string;
  try {
    // WHATWG URL serializes IPv6 canonically (lower case, zeros compressed).
    canonical = new URL(`http://[${trimmed}]`).hostname.slice(1, -1);
  } catch {
    return trimmed.toLowerCase();
  }
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canonical);
  if (mapped === null) return canonical;
  const high = parseInt(mapped[1]!, 16);
  const low = parseInt(mapped[2]!, 16);
  return `${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`;
}

/**
 * The key `address` counts under for the per-address limits: an IPv4 address itself; an IPv6
 * address's first `ipv6PrefixLength` bits, as `2001:db8:1:2::/64` (a subscriber is given a /64
 * or more, and picks any address in it for each connection: counted one by one, one host would
 * have 2^64 addresses' limits); anything else as normalizeAddress() spells it.
 */
export function addressGroup(address: string, ipv6PrefixLength: number): string {
  const normalized = normalizeAddress(address);
  if (ipv6PrefixLength >= 128 || isIP(normalized) !== 6) return normalized;
  const groups = ipv6Groups(normalized);
  for (let i = 0; i < 8; i++) {
    const kept = Math.min(16, Math.max(0, ipv6PrefixLength - 16 * i));
    groups[i] = kept === 0 ? 0 : groups[i]! & ((0xffff << (16 - kept)) & 0xffff);
  }
  return `${normalizeAddress(groups.map((g) => g.toString(16)).join(':'))}/${ipv6PrefixLength}`;
}

/** The eight 16-bit groups of an IPv6 address in normalizeAddress()'s spelling (hex only, `::` at most once). */
function ipv6Groups(canonical: string): number[] {
  const [head, tail] = canonical.split('::') as [string, string | undefined];
  const parse = (part: string | undefined): number[] => (part ? part.split(':').map((g) => parseInt(g, 16)) : []);
  const before = parse(head);
  const after = parse(tail);
  return [...before, ...new Array<number>(Math.max(0, 8 - before.length - after.length)).fill(0), ...after].slice(0, 8);
}

export class ClientAddresses {
  private readonly trusted: ReadonlySet<string>;

  constructor(trustedProxies: readonly string[]) {
    this.trusted = new Set(trustedProxies.map(normalizeAddress));
  }

  /**
   * The client's address: `peer`'s, unless `peer` is a trusted proxy and `forwardedFor` names
   * one. `forwardedFor`: every X-Forwarded-For line of the request joined with commas, in order
   * (a proxy may add a line of its own behind the client's rather than append to it).
   */
  of(peer: string, forwardedFor: string): string {
    // No proxy configured: the peer as uWS spells it, as before (nothing to compare).
    if (this.trusted.size === 0) return peer;
    const address = normalizeAddress(peer);
    if (!this.trusted.has(address) || forwardedFor === '') return address;
    const hops = forwardedFor.split(',');
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = normalizeAddress(hops[i]!);
      if (isIP(hop) === 0) return address; // not an address: the header is not to be believed
      if (!this.trusted.has(hop)) return hop;
    }
    return address;
  }

  /**
   * Whether the request's X-Forwarded-For names its client: present, and every hop an address
   * (of() falls back on the peer otherwise, which for a proxy on this host is loopback).
   */
  namesClient(req: HttpRequest): boolean {
    const hops = headerList(req, 'x-forwarded-for');
    return hops.trim() !== '' && hops.split(',').every((hop) => isIP(normalizeAddress(hop)) !== 0);
  }

  /** Whether the request's peer is listed in trusted_proxies. */
  trustsPeer(res: HttpResponse): boolean {
    return this.trusted.size > 0 && this.trusted.has(normalizeAddress(Buffer.from(res.getRemoteAddressAsText()).toString()));
  }

  /** of() for a uWS request: call it before the handler returns (uWS's request is gone after). */
  ofRequest(req: HttpRequest, res: HttpResponse): string {
    return this.of(Buffer.from(res.getRemoteAddressAsText()).toString(), this.trusted.size > 0 ? headerList(req, 'x-forwarded-for') : '');
  }
}
