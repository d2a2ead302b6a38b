import { describe, expect, it } from 'vitest';
import { parsePublish } from './publish.js';

describe('--publish syntax', () => {
  it('parses the Docker/Podman forms', () => {
    expect(parsePublish('8080:80')).toEqual([{ proto: 'tcp', hostAddress: null, hostPort: 8080, containerPort: 80, text: '8080:80' }]);
    expect(parsePublish('127.0.0.1:8080:80/udp')[0]).toMatchObject({ proto: 'udp', hostAddress: '127.0.0.1', hostPort: 8080, containerPort: 80 });
    expect(parsePublish('[::1]:8080:80')[0]).toMatchObject({ hostAddress: '::1', hostPort: 8080, containerPort: 80 });
    expect(parsePublish(':8080:80')[0].hostAddress).toBeNull();
    expect(parsePublish('8000-8002:9000-9002/tcp').map((s) => [s.hostPort, s.containerPort])).toEqual([[8000, 9000], [8001, 9001], [8002, 9002]]);
  });
  it('names the problem', () => {
    expect(() => parsePublish('80')).toThrow(/expected \[HOST_IP:\]HOST_PORT:CONTAINER_PORT/);
    expect(() => parsePublish('8080:80/sctp')).toThrow(/protocol "sctp"/);
    expect(() => parsePublish('1.2.3:8080:80')).toThrow(/not an IPv4 address/);
    expect(() => parsePublish('[zz]:8080:80')).toThrow(/not an IPv6 address/);
    expect(() => parsePublish('70000:80')).toThrow(/not a port/);
    expect(() => parsePublish('8000-8001:80')).toThrow(/same length/);
    expect(() => parsePublish('8002-8000:80-82')).toThrow(/ends before/);
  });
});
