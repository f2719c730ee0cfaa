/** The HTTP listener's loopback Host check takes exact loopback names only (DNS rebinding). */
import { describe, expect, it } from 'vitest';
import { isLoopback } from '../src/listener.ts';

describe('isLoopback', () => {
  it.each(['127.0.0.1', '127.1.2.3', 'localhost', '[::1]'])('takes %s', (host) => expect(isLoopback(host)).toBe(true));
  it.each(['127.0.0.1.evil.example', '127.evil.example', '127.0.0.1x', 'evil.example', '1270.0.0.1'])('refuses %s', (host) => expect(isLoopback(host)).toBe(false));
});
