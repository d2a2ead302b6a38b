/**
 * An address and port as text, the way users type them and Node prints them: IPv6 addresses in
 * brackets (`[::1]:53`), IPv4 as is (`127.0.0.1:8080`). Used by log lines, errors, the API's
 * `list_flows` and forward descriptions alike, so one endpoint reads the same everywhere.
 */
export function hostPort(address: string, port: number): string {
  return `${address.includes(':') ? `[${address}]` : address}:${port}`;
}
