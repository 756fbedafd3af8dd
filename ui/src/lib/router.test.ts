import { describe, expect, it } from 'vitest';
import { parseRoute, routePath } from './router.svelte';

describe('routes', () => {
  it('parses and prints every page', () => {
    for (const path of ['/', '/chat/12', '/models', '/hardware', '/settings']) {
      expect(routePath(parseRoute(path))).toBe(path);
    }
    expect(parseRoute('/nowhere')).toEqual({ name: 'chat', id: null });
    expect(parseRoute('/chat/12/')).toEqual({ name: 'chat', id: 12 });
  });
});
