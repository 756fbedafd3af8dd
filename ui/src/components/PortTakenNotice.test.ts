import { afterEach, describe, expect, it } from 'vitest';
import { flushSync, mount, unmount } from 'svelte';
import PortTakenNotice from './PortTakenNotice.svelte';
import { app } from '../lib/app.svelte';

describe('PortTakenNotice', () => {
  let component: ReturnType<typeof mount> | null = null;

  afterEach(() => {
    if (component) unmount(component);
    component = null;
    app.system = null;
  });

  it('says which port was taken and where Hearth listens instead', () => {
    app.system = { server: { port: 40123, configured_port_taken: 4327 } };
    component = mount(PortTakenNotice, { target: document.body });
    flushSync();
    const notice = document.querySelector('[data-testid="api-port-taken"]');
    expect(notice?.textContent).toContain('4327');
    expect(notice?.textContent).toContain('40123');
    expect(notice?.textContent).toContain('taken by another program');
  });

  it('says nothing when the configured port was free', () => {
    app.system = { server: { port: 4327, configured_port_taken: null } };
    component = mount(PortTakenNotice, { target: document.body });
    flushSync();
    expect(document.querySelector('[data-testid="api-port-taken"]')).toBeNull();
  });
});
