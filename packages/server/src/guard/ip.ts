/**
 * CIDR allowlists for approvals, on node:net's BlockList (IPv4 and IPv6; an IPv4-mapped IPv6
 * address such as `::ffff:10.1.2.3` is checked as the IPv4 address it carries).
 */
import { BlockList, isIP } from 'node:net';

/** The CIDR normalised (`10.1.2.3` → `10.1.2.3/32`), or null when it is not one. */
export function parseCidr(text: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6'; cidr: string } | null {
  const [address = '', prefixText, extra] = text.trim().split('/');
  if (extra !== undefined) return null;
  const version = isIP(address);
  if (version === 0) return null;
  const max = version === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) return null;
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6', cidr: `${address}/${prefix}` };
}

export function ipAllowed(ip: string, cidrs: readonly string[]): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  const address = mapped ? mapped[1]! : ip;
  const version = isIP(address);
  if (version === 0) return false;
  const list = new BlockList();
  for (const text of cidrs) {
    const c = parseCidr(text);
    if (c) list.addSubnet(c.address, c.prefix, c.family);
  }
  return list.check(address, version === 4 ? 'ipv4' : 'ipv6');
}
