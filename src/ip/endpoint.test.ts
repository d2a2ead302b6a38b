import { describe, expect, it } from 'vitest';
import { hostPort } from './endpoint.js';

describe('hostPort', () => {
  it('writes IPv4 as is and brackets IPv6, mapped IPv4 included', () => {
    expect(hostPort('127.0.0.1', 8080)).toBe('127.0.0.1:8080');
    expect(hostPort('::1', 53)).toBe('[::1]:53');
    expect(hostPort('fd00::2', 0)).toBe('[fd00::2]:0');
    expect(hostPort('::ffff:10.0.2.2', 80)).toBe('[::ffff:10.0.2.2]:80');
  });
});
